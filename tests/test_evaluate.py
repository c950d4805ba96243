"""`shiftalign evaluate` on tiny models with a python gold scorer."""

import json

import numpy as np
import pytest
import yaml

from conftest import write_jsonl
from shiftalign.cli import main
from shiftalign.recipes.evaluate import paired_bootstrap


def test_paired_bootstrap():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    d, lo, hi = paired_bootstrap(a, a - 0.5, 500, 0)
    assert d == pytest.approx(0.5) and lo == pytest.approx(0.5) and hi == pytest.approx(0.5)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=200), rng.normal(size=200) + 0.6
    d, lo, hi = paired_bootstrap(y, x, 2000, 0)
    assert lo < d < hi and lo > 0  # a shift of 0.6 (standard error 0.1) excludes zero


def test_evaluate_policies(tmp_path):
    from shiftalign.models.tiny import save_tiny

    import torch
    from transformers import AutoModelForCausalLM

    p0, p1 = save_tiny(tmp_path / "p0", seed=0), save_tiny(tmp_path / "p1", seed=1)
    sharp = AutoModelForCausalLM.from_pretrained(p1)
    with torch.no_grad():  # a random tiny model is near-uniform; sharpen one so the two policies differ clearly
        sharp.lm_head.weight.mul_(40)
    sharp.save_pretrained(p1)
    rm = save_tiny(tmp_path / "rm", seed=2, reward=True)
    (tmp_path / "gold.py").write_text("def g(prompts, responses):\n    return [r.count('o') / max(len(r), 1) "
                                      "for r in responses]\n")
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"id": f"q{i}", "prompt": f"what is {i}"} for i in range(6)])
    cfg = {"prompts": prompts, "policies": {"initial": p0, "other": p1}, "baseline": "initial",
           "gold": {"name": "python", "function": f"{tmp_path / 'gold.py'}:g"}, "reward_model": rm,
           "sampling": {"n": 3, "max_new_tokens": 8}, "output_dir": str(tmp_path / "ev"), "bootstrap": 200,
           "progress": False}
    (tmp_path / "e.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["evaluate", str(tmp_path / "e.yaml")]) == 0
    res = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    init, other = res["policies"]["initial"], res["policies"]["other"]
    assert res["prompts"] == 6
    assert init["win_rate_vs_baseline"] == pytest.approx(0.5 + 0.0, abs=0.2) and init["kl_to_baseline"] == 0.0
    assert init["gold_diff_vs_initial"] == 0.0
    lo, hi = other["gold_diff_vs_initial_ci95"]
    assert lo <= other["gold_diff_vs_initial"] <= hi
    assert other["kl_to_baseline"] > 0  # two different random models
    assert other["reward_model_accuracy"] is None or 0 <= other["reward_model_accuracy"] <= 1
    # A rerun with one more policy computes model metrics for that policy only; the others come from the cache.
    import shiftalign.recipes.evaluate as ev_mod

    calls = []
    real = ev_mod.sequence_logps
    ev_mod.sequence_logps = lambda path, rows, wrap: calls.append(path) or real(path, rows, wrap)
    try:
        cfg["policies"]["third"] = p1
        (tmp_path / "e.yaml").write_text(yaml.safe_dump(cfg))
        assert main(["evaluate", str(tmp_path / "e.yaml")]) == 0
    finally:
        ev_mod.sequence_logps = real
    again = json.loads((tmp_path / "ev" / "evaluation.json").read_text())["policies"]
    assert calls == [p0]  # one KL pass: the new policy's, against the baseline
    assert again["other"]["kl_to_baseline"] == other["kl_to_baseline"] and "third" in again
