"""`shiftalign iterate` on tiny models: two rounds of sample -> label -> train, resumable by round."""

import json

import pytest
import yaml

from shiftalign.cli import main

from conftest import pref_rows, write_jsonl


@pytest.mark.parametrize("reference", ["initial", "previous"])
def test_two_rounds_and_resume(tmp_path, tiny_dir, reference):
    from shiftalign.models.tiny import save_tiny

    rm = save_tiny(tmp_path / "rm", seed=5, reward=True)
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"id": f"q{i}", "prompt": f"what is {i}?"} for i in range(8)])
    source = write_jsonl(tmp_path / "src.jsonl", [{**r, "id": f"s{i}"} for i, r in enumerate(pref_rows(4))])
    cfg = {"output_dir": str(tmp_path / "it"), "rounds": 2, "prompts": prompts, "reference": reference,
           "mix_source": source,
           "sample": {"sampling": {"n": 3, "max_new_tokens": 8}, "batch_size": 12, "progress": False},
           "label": {"labeller": "reward_model", "progress": False,
                     "reward_model": {"models": [rm], "pairs": "best_vs_worst"}},
           "train": {"model": {"path": tiny_dir}, "loss": {"name": "dpo", "beta": 0.1},
                     "cache_dir": str(tmp_path / "ref"),
                     "train": {"batch_size": 4, "micro_batch_size": 2, "lr": 1e-3, "progress": False}}}
    path = tmp_path / "it.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["iterate", str(path)]) == 0
    rounds = [json.loads(l) for l in (tmp_path / "it" / "rounds.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rounds] == [1, 2]
    for r in rounds:
        assert r["labels"]["pairs"] > 0 and r["train_examples"] == r["labels"]["pairs"] + 4
    r2 = yaml.safe_load((tmp_path / "it" / "round-2" / "train" / "config.yaml").read_text())
    assert r2["model"]["path"] == str(tmp_path / "it" / "round-1" / "train" / "model")
    assert r2["reference"] == (tiny_dir if reference == "initial" else r2["model"]["path"])
    # Round 2 sampled from round 1's model.
    s2 = json.loads((tmp_path / "it" / "round-2" / "samples.jsonl").read_text().splitlines()[0])
    assert s2["policy"] == r2["model"]["path"]
    # A rerun finds both rounds done and redoes nothing.
    before = (tmp_path / "it" / "round-2" / "train" / "model" / "model.safetensors").stat().st_mtime_ns
    assert main(["iterate", str(path)]) == 0
    assert (tmp_path / "it" / "round-2" / "train" / "model" / "model.safetensors").stat().st_mtime_ns == before
    assert len((tmp_path / "it" / "rounds.jsonl").read_text().splitlines()) == 2


def test_mixed_source_weights_follow_missing_weight(tmp_path):
    from shiftalign.data.load import load_examples
    from shiftalign.errors import DataError
    from shiftalign.recipes.iterate import IterateConfig, source_rows

    src = write_jsonl(tmp_path / "src.jsonl", [{"prompt": f"q{i}", "chosen": "good", "rejected": "bad"} for i in range(3)])
    ids = [e.id for e in load_examples(src, "paired")]  # content-hash ids: the rows carry none
    w = write_jsonl(tmp_path / "w.jsonl", [{"id": ids[0], "weight": 2.5}, {"id": ids[1], "weight": 0.5}])
    cfg = IterateConfig(mix_source=src, mix_weights=w)
    with pytest.raises(DataError, match=ids[2]):  # no weight for the third pair: refused, not weight 1
        source_rows(cfg)
    cfg.train.data.missing_weight = "drop"
    assert [r["weight"] for r in source_rows(cfg)] == [2.5, 0.5]
    cfg.train.data.missing_weight = "one"
    assert [r["weight"] for r in source_rows(cfg)] == [2.5, 0.5, 1.0]
