"""An experiment's arms evaluated along their training trajectory (dpo_train.snapshots; experiment.points),
end to end on tiny models."""

import json

import pytest

from conftest import TRAIN
from fake_llm_server import FakeLLM
from helpers import run_experiment_config as _run


def test_trajectory_points_are_evaluated_in_the_arms_stage_and_their_weights_deleted(bench_cfg, tmp_path,
                                                                                      monkeypatch):
    """With dpo_train.snapshots every DPO-family arm's earlier points (and a 2-round arm's first round) are
    evaluated like the final policies, kept per prompt in the arm's stage record and drawn as the arm's
    curve; the snapshots' weights are gone once evaluated, and a rerun redoes nothing."""
    train = {**TRAIN, "epochs": 2, "snapshots": [0.5]}
    arms = [{"name": "initial", "kind": "initial"}, {"name": "dpo_source", "kind": "dpo", "seeds": 2},
            {"name": "it", "kind": "pseudo", "labeller": "gold", "rounds": 2}, {"name": "oracle", "kind": "pseudo",
                                                                               "labeller": "gold"}]
    root = tmp_path / "bench"
    with FakeLLM() as server:
        assert _run({**bench_cfg, "dpo_train": train, "arms": arms}, tmp_path, monkeypatch, server) == 0
    src = json.loads((root / "stages" / "arm_dpo_source.json").read_text())
    (point,) = src["points"]
    assert point["label"].startswith("step ") and len(point["gold_per_prompt"]) == 6 and point["kl_to_baseline"] >= 0
    it = json.loads((root / "stages" / "arm_it.json").read_text())["points"]
    assert [p["label"].split(" step")[0] for p in it] == ["round 1", "round 1 end", "round 2"]
    assert not list(root.rglob("snapshots/step-*"))  # evaluated, then deleted
    rows = {r["arm"]: r for r in json.loads((root / "results.json").read_text())["arms"]}
    f = rows["dpo_source"]["frontier"]
    assert [p["label"] for p in f][-1] == "end" and f[0]["seeds"] == 2 and len(f) == 2
    assert f[-1]["kl"] == pytest.approx(rows["dpo_source"]["kl"]) and f[-1]["gold"] == pytest.approx(rows["dpo_source"]["gold"])
    lo, hi = f[0]["gain_ci95"]
    assert lo <= f[0]["gain_over_initial"] <= hi
    assert len(rows["it"]["frontier"]) == 4 and "frontier" not in rows["initial"]
    # gold-free selection reads the points' samples after their weights are gone: every replicate's point and
    # final policy of the source-only arm is a candidate (the gold-labelled arms are not)
    sel = json.loads((root / "results.json").read_text())["selection"]
    reps = {n: json.loads((root / "stages" / f"arm_{n}.json").read_text())["points"] for n in ("dpo_source", "dpo_source@1")}
    assert [c["name"] for c in sel["candidates"]] == [x for n in reps for x in [f"{n} {p['label']}" for p in reps[n]] + [n]]
    assert sel["candidates"][0]["gold"] == pytest.approx(point["gold_mean"]) and sel["candidates"][0]["samples_n"] == 12
    assert sel["members"] == 1 and sel["selectors"]["conservative"]["pick"] is None  # a fine-tuned model: no spread
    rm = sel["selectors"]["reward_model"]
    assert rm["pick"] in {c["name"] for c in sel["candidates"]} and rm["regret"] >= 0
    assert rm["regret_ci95"][0] <= rm["regret"] <= rm["regret_ci95"][1]
