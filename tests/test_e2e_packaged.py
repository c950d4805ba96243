"""End to end on the packaged SmolLM2-135M-Instruct (slow: minutes on a CPU; `make test-slow`).

Samples from the policy (target), fits density-ratio weights between the bundled preference pairs
and the samples, trains weighted DPO, and checks the weights and diagnostics reached the metrics.
"""

import json
from pathlib import Path

import pytest

from shiftalign.cli import main

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def test_sample_weights_weighted_dpo(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("SHIFTALIGN_CACHE")  # reuse the converted packaged model
    s, w, r = tmp_path / "samples.jsonl", tmp_path / "weights", tmp_path / "dpo"
    assert main(["sample", "configs/sample.yaml", f"output={s}", "sampling.max_new_tokens=40", "progress=false"]) == 0
    assert len(s.read_text().splitlines()) == 48
    assert main(["weights", "fit", "configs/weights.yaml", f"target={s}", f"output_dir={w}"]) == 0
    diag = json.loads((w / "diagnostics.json").read_text())
    assert 0 < diag["ess_fraction"] <= 1 and "domain_auc_after" in diag
    assert main(["train", "configs/dpo_weighted.yaml", f"output_dir={r}", f"data.weights={w / 'weights.jsonl'}",
                 "train.progress=false", f"cache_dir={tmp_path / 'ref'}"]) == 0
    recs = [json.loads(l) for l in (r / "metrics.jsonl").read_text().splitlines()]
    steps = [x for x in recs if "weight_ess_fraction" in x]
    assert len(steps) == 3 and all(0 < x["weight_ess_fraction"] <= 1 for x in steps)
    assert recs[-1]["eval/accuracy"] >= 0


def test_reward_model_then_two_rounds_of_iterate(tmp_path, monkeypatch):
    """Reward recipe on the bundled pairs, then `iterate` for two rounds labelled by that reward model."""
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("SHIFTALIGN_CACHE")
    rm = tmp_path / "rm"
    assert main(["train", "configs/reward.yaml", f"output_dir={rm}", "train.epochs=1", "train.progress=false"]) == 0
    it = tmp_path / "it"
    assert main(["iterate", "configs/iterate.yaml", f"output_dir={it}", f"label.reward_model.models=[{rm / 'model'}]",
                 "sample.sampling.n=2", "sample.sampling.max_new_tokens=24", "sample.progress=false",
                 "train.train.progress=false", f"train.cache_dir={tmp_path / 'ref'}"]) == 0
    rounds = [json.loads(l) for l in (it / "rounds.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rounds] == [1, 2]
    assert all(r["labels"]["pairs"] > 0 for r in rounds)
    assert (it / "round-2" / "train" / "model" / "model.safetensors").exists()
