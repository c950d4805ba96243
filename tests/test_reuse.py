"""A finished run whose settings, data and models are the same is reused, not trained again (recipes.reuse)."""

import json

from shiftalign.config import RunConfig, from_dict
from shiftalign.recipes import RECIPES
from shiftalign.recipes.reuse import run_key

from conftest import iterate_config, pref_rows, write_jsonl


def _run(tiny_dir, train_file, out, store, **train):
    cfg = from_dict(RunConfig, {"recipe": "preference", "output_dir": str(out), "model": {"path": tiny_dir},
                                "data": {"train": str(train_file)}, "loss": {"name": "dpo"}, "reuse": str(store),
                                "train": {"batch_size": 4, "micro_batch_size": 2, "lr": 1e-3, "progress": False,
                                          **train}})
    return cfg, RECIPES.get("preference").main(cfg)


def test_the_same_run_is_linked_and_a_different_one_trains(tiny_dir, tmp_path, capsys):
    rows = pref_rows()
    data = write_jsonl(tmp_path / "a.jsonl", rows)
    copy = write_jsonl(tmp_path / "copy.jsonl", rows)  # another file, the same contents
    store = tmp_path / "trained"
    _, first = _run(tiny_dir, data, tmp_path / "first", store)
    capsys.readouterr()
    cfg, second = _run(tiny_dir, copy, tmp_path / "second", store, log_every=5)  # logging changes no result
    assert "its model is reused, nothing trained" in capsys.readouterr().out
    a, b = tmp_path / "first" / "model", tmp_path / "second" / "model"
    assert second.model == str(b) and second.steps == first.steps and second.train == first.train
    assert (a / "model.safetensors").stat().st_ino == (b / "model.safetensors").stat().st_ino  # linked, not copied
    assert json.loads((tmp_path / "second" / "reused.json").read_text())["from"] == str(tmp_path / "first")
    assert (tmp_path / "second" / "metrics.jsonl").read_text() == (tmp_path / "first" / "metrics.jsonl").read_text()
    assert str(tmp_path / "second") in (b / "shiftalign_config.yaml").read_text()  # its own config, not the first's
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(b)
    # Different data, a different setting, or a recorded run whose model is gone: trained.
    other = write_jsonl(tmp_path / "other.jsonl", rows[:-1])
    assert run_key(from_dict(RunConfig, {**_dict(cfg), "data": {"train": str(other)}})) != run_key(cfg)
    _run(tiny_dir, data, tmp_path / "lr", store, lr=2e-3)
    assert not (tmp_path / "lr" / "reused.json").exists()
    for f in (a, b):
        for p in f.iterdir():
            p.unlink()
        f.rmdir()
    _run(tiny_dir, data, tmp_path / "third", store)
    assert not (tmp_path / "third" / "reused.json").exists() and (tmp_path / "third" / "model").is_dir()


def _dict(cfg):
    from shiftalign.config import to_dict

    return to_dict(cfg)


def test_iterated_runs_that_differ_from_round_two_on_share_round_one(tmp_path, tiny_dir):
    """Round 1 of an iterate run with reference: previous is the same training as with reference: initial
    (both refer to the starting policy); round 2 is not."""
    import yaml

    from shiftalign.cli import main
    from shiftalign.models.tiny import save_tiny

    rm = save_tiny(tmp_path / "rm", seed=5, reward=True)
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"id": f"q{i}", "prompt": f"what is {i}?"} for i in range(6)])
    for reference in ("previous", "initial"):
        cfg = iterate_config(tmp_path / reference, tiny_dir, rm, prompts, reference)
        cfg["train"]["reuse"] = str(tmp_path / "trained")
        (tmp_path / "it.yaml").write_text(yaml.safe_dump(cfg))
        assert main(["iterate", str(tmp_path / "it.yaml")]) == 0
    r1, r2 = (tmp_path / "initial" / f"round-{r}" / "train" for r in (1, 2))
    assert json.loads((r1 / "reused.json").read_text())["from"] == str(tmp_path / "previous" / "round-1" / "train")
    assert not (r2 / "reused.json").exists()
    rounds = [json.loads(line) for line in (tmp_path / "initial" / "rounds.jsonl").read_text().splitlines()]
    assert rounds[0]["model"] == str(r1 / "model") and rounds[1]["train_examples"] > 0
