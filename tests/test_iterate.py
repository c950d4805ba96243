"""`shiftalign iterate` on tiny models: two rounds of sample -> label -> train, resumable by round."""

import json

import pytest
import yaml

from shiftalign.cli import main

from conftest import iterate_config, pref_rows, write_jsonl


@pytest.mark.parametrize("reference", ["initial", "previous"])
def test_two_rounds_and_resume(tmp_path, tiny_dir, reference):
    from shiftalign.models.tiny import save_tiny

    rm = save_tiny(tmp_path / "rm", seed=5, reward=True)
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"id": f"q{i}", "prompt": f"what is {i}?"} for i in range(8)])
    source = write_jsonl(tmp_path / "src.jsonl", [{**r, "id": f"s{i}"} for i, r in enumerate(pref_rows(4))])
    cfg = iterate_config(tmp_path / "it", tiny_dir, rm, prompts, reference, mix_source=source)
    cfg["train"]["cache_dir"] = str(tmp_path / "ref")
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


def test_confidence_weighted_pseudo_pairs_reach_the_loss_through_the_weight_path(tmp_path, tiny_dir):
    """Pseudo-pairs get weight tanh(margin / 2T) (a judge's p: 2p - 1); a pair of weight 0 (margin 0)
    changes no gradient: changing its responses leaves the step's gradients equal up to float
    summation order (its length changes how rows are grouped into micro-batches), while the same
    pair at weight 1 moves them by far more."""
    import math

    import torch

    from shiftalign.recipes.iterate import IterateConfig, _training_set, confidence_weight

    from helpers import grads_after_step, make_trainer

    assert confidence_weight({"margin": 2.0}, 1.0) == pytest.approx(2 / (1 + math.exp(-2.0)) - 1)
    assert confidence_weight({"confidence": 0.75}, 1.0) == pytest.approx(0.5)

    def pseudo(name, odd):
        rows = [{"id": f"p{i}", "prompt": f"what is {i}?", "chosen": f"a good answer {i}",
                 "rejected": odd if i == 3 else f"bad rude answer {i}", "provenance": {"margin": 0.0 if i == 3 else 0.5 + i}}
                for i in range(8)]
        return _training_set(write_jsonl(tmp_path / f"{name}.jsonl", rows), IterateConfig(confidence_temperature=1.0),
                             tmp_path / f"{name}_train.jsonl")

    a, b = pseudo("a", "short"), pseudo("b", "a very different and much longer rejected reply " * 3)
    weights = [json.loads(line)["weight"] for line in a.read_text().splitlines()]
    assert weights[3] == 0.0 and all(w > 0 for i, w in enumerate(weights) if i != 3)
    _, ga = grads_after_step(make_trainer(tiny_dir, str(a), tmp_path / "ta"), list(range(8)))
    _, gb = grads_after_step(make_trainer(tiny_dir, str(b), tmp_path / "tb"), list(range(8)))
    assert ga and all(torch.allclose(ga[k], gb[k], rtol=0, atol=1e-7) for k in ga)
    c = pseudo("c", "short")
    rows = [json.loads(line) for line in c.read_text().splitlines()]
    rows[3]["weight"] = 1.0  # the same pair at weight 1 does move the gradients
    write_jsonl(tmp_path / "c_train.jsonl", rows)
    _, gc = grads_after_step(make_trainer(tiny_dir, str(tmp_path / "c_train.jsonl"), tmp_path / "tc"), list(range(8)))
    assert max((ga[k] - gc[k]).abs().max().item() for k in ga) > 1e-4


def test_refit_reward_heads_every_round_toward_its_samples(tmp_path, tiny_dir):
    """With refit, each round labels with reward heads fitted on the source pairs, importance-weighted
    toward that round's own samples."""
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"id": f"q{i}", "prompt": f"what is {i}?"} for i in range(8)])
    source = write_jsonl(tmp_path / "src.jsonl", [{**r, "id": f"s{i}"} for i, r in enumerate(pref_rows(16))])
    feats = {"kind": "hidden", "model": tiny_dir}
    cfg = {"output_dir": str(tmp_path / "it"), "rounds": 2, "prompts": prompts,
           "sample": {"sampling": {"n": 3, "max_new_tokens": 8}, "batch_size": 12, "progress": False},
           "label": {"labeller": "reward_model", "progress": False, "reward_model": {"pairs": "best_vs_worst"}},
           "refit": {"weights": {"source": source, "features": feats, "estimator": {"name": "classifier", "folds": 2},
                                 "cache_dir": str(tmp_path / "cache")},
                     "heads": {"pairs": source, "features": feats, "heads": 3, "l2": 1.0,
                               "cache_dir": str(tmp_path / "cache")}},
           "train": {"model": {"path": tiny_dir}, "loss": {"name": "dpo", "beta": 0.1}, "cache_dir": str(tmp_path / "ref"),
                     "train": {"batch_size": 4, "micro_batch_size": 2, "lr": 1e-3, "progress": False}}}
    path = tmp_path / "it.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["iterate", str(path)]) == 0
    rounds = [json.loads(l) for l in (tmp_path / "it" / "rounds.jsonl").read_text().splitlines()]
    weights = []
    for r in rounds:
        rd = tmp_path / "it" / f"round-{r['round']}"
        assert 0 < r["refit"]["ess_fraction"] <= 1 and "domain_auc_before" in r["refit"]
        heads = yaml.safe_load((rd / "reward" / "config.yaml").read_text())
        assert heads["weights"] == str(rd / "reward_weights" / "weights.jsonl") and heads["heads"] == 3
        assert json.loads((rd / "reward" / "reward_heads.json").read_text())["weighted"] is True
        label_cfg = yaml.safe_load((rd / "labels" / "config.yaml").read_text())
        assert label_cfg["reward_model"]["models"] == [str(rd / "reward")]
        weights.append([json.loads(l)["weight"] for l in (rd / "reward_weights" / "weights.jsonl").read_text().splitlines()])
    assert weights[0] != weights[1]  # each round's weights point at that round's samples


def test_refit_needs_a_reward_model_labeller(tmp_path, capsys):
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"id": "q", "prompt": "hi"}])
    cfg = {"output_dir": str(tmp_path / "it"), "prompts": prompts, "label": {"labeller": "judge"},
           "refit": {"heads": {"pairs": "x.jsonl"}}}
    (tmp_path / "it.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["iterate", str(tmp_path / "it.yaml")]) != 0
    assert "refit" in capsys.readouterr().err
    assert not (tmp_path / "it").exists()


def test_pseudo_arm_refit_options_are_checked():
    from shiftalign.errors import ConfigError
    from shiftalign.experiment.arms.pseudo import PseudoOptions

    with pytest.raises(ConfigError, match="refit_reward"):
        PseudoOptions(refit_reward=True)  # which estimator? it comes with reward_weights
    assert PseudoOptions(refit_reward=True, reward_weights={"estimator": {"name": "ulsif"}}).refit_reward
