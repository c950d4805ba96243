"""An arm read against a matched baseline: the arm trained as long without information about the target."""

import numpy as np
import pytest

from shiftalign.config import ConfigError
from shiftalign.experiment.arms import ArmResult
from shiftalign.experiment.config import ExperimentConfig, parse_arms, selected_arms
from shiftalign.experiment.tables import markdown_table
from shiftalign.experiment.verdict import verdict

from helpers import rows_of

P = 40


def _policy(mean: float, noise: float = 0.05, seed: int = 0) -> dict:
    gold = mean + noise * np.random.default_rng(seed).standard_normal(P)
    return {"gold_per_prompt": gold.tolist(), "gold_mean": float(gold.mean()), "kl_to_baseline": 1.0,
            "win_rate_vs_baseline": 0.5}


def _rows(oracle_mean: float) -> dict:
    pol = {"initial": _policy(0.3, seed=1), "src": _policy(0.5, seed=2), "long": _policy(0.6, seed=3),
           "warm": _policy(0.7, seed=4), "owarm": _policy(oracle_mean, seed=5)}
    roles = {"initial": "reference", "src": "control", "long": "control", "warm": "method", "owarm": "oracle"}
    rows = rows_of("src", "owarm", {n: ArmResult(n) for n in pol}, {"policies": pol}, {}, None, roles,
                    {"warm": "owarm"}, {"warm": "long"})
    return {r["arm"]: r for r in rows}, pol


def test_the_matched_baseline_gives_the_difference_and_gap_recovery_at_equal_training():
    rows, pol = _rows(oracle_mean=0.9)
    m = rows["warm"]["matched"]
    gold = {n: np.mean(e["gold_per_prompt"]) for n, e in pol.items()}
    assert m["arm"] == "long" and m["oracle"] == "owarm"
    assert m["diff"] == pytest.approx(gold["warm"] - gold["long"])
    assert m["ci95"][0] > 0 and m["ci95"][0] < m["diff"] < m["ci95"][1]
    assert m["oracle_diff"] == pytest.approx(gold["owarm"] - gold["long"])
    assert m["gap_recovery"] == pytest.approx((gold["warm"] - gold["long"]) / (gold["owarm"] - gold["long"]))
    # The headline difference and gap recovery stay against the experiment's baseline.
    assert rows["warm"]["diff"] == pytest.approx(gold["warm"] - gold["src"])
    assert rows["warm"]["gap_recovery"] == pytest.approx((gold["warm"] - gold["src"]) / (gold["owarm"] - gold["src"]))
    assert "matched" not in rows["long"] and "matched" not in rows["src"]
    table = markdown_table(list(rows.values()), "src", "initial")
    assert "Δ vs its matched baseline (gap recovery)" in table
    assert f"vs long ({m['gap_recovery']:.3g} [" in table  # with its interval
    lines = verdict(list(rows.values()), {"initial": "initial"}, "src", "owarm", "g",
                    {"initial": "reference", "src": "control", "long": "control", "warm": "method", "owarm": "oracle"})
    d = f"{m['diff']:+.3g} [{m['ci95'][0]:+.3g}, {m['ci95'][1]:+.3g}]"
    assert (f"Its matched baseline `long` (trained as long, without information about the target) is at "
            f"{rows['long']['diff']:+.3g}") in lines[0]
    assert f"at equal training `warm` is at {d} against it (resolved: the interval lies above zero)" in lines[0]
    lo, hi = m["gap_recovery_ci95"]
    assert lo < m["gap_recovery"] < hi
    assert f"so it recovers {m['gap_recovery']:.3g} [{lo:.3g}, {hi:.3g}] of that gap (that it recovers at least half " \
        "is not supported: the interval reaches below 0.5)." in lines[0]
    assert lines[0].count("`long`") == 1  # not read a second time as a control
    assert "Equal training is not equal KL" not in lines[0]  # both end 1 nat out
    rows["warm"]["kl"], rows["warm"]["gain_per_nat"], rows["long"]["gain_per_nat"] = 9.0, 0.02, 0.05
    lines = verdict(list(rows.values()), {"initial": "initial"}, "src", "owarm", "g",
                    {"initial": "reference", "src": "control", "long": "control", "warm": "method", "owarm": "oracle"})
    assert ("Equal training is not equal KL: it ends 9 nats from the initial policy and `long` 1; per nat beyond "
            "`src` it gains 0.02 of gold, `long` 0.05.") in lines[0]
    assert f"vs its matched baseline `long` {d}" in lines[1]


def test_no_gap_recovery_at_equal_training_when_the_oracle_does_not_beat_the_matched_baseline():
    rows, _ = _rows(oracle_mean=0.6)  # the oracle is as good as the matched baseline: the ratio is noise
    m = rows["warm"]["matched"]
    assert m["oracle_ci95"][0] <= 0 and m["gap_recovery"] is None
    lines = verdict(list(rows.values()), {"initial": "initial"}, "src", "owarm", "g",
                    {"initial": "reference", "src": "control", "long": "control", "warm": "method", "owarm": "oracle"})
    assert ": not resolved, so no gap-recovery ratio at equal training." in lines[0]


def _cfg(**warm) -> ExperimentConfig:
    return ExperimentConfig(arms=[{"name": "initial", "kind": "initial"}, {"name": "dpo_source", "kind": "dpo"},
                                  {"name": "long", "kind": "dpo", "train": {"max_steps": 12}},
                                  {"name": "warm", "kind": "pseudo", "labeller": "random", **warm}],
                            oracle_arm=None)


def test_a_matched_baseline_is_a_reading_not_an_option_and_is_run_with_its_arm():
    plain, matched = parse_arms(_cfg())[-1], parse_arms(_cfg(matched_baseline="long"))[-1]
    assert matched.matched_baseline == "long" and plain.matched_baseline is None
    assert matched.options == plain.options  # the arm's training (and its stage key) does not change
    cfg = _cfg(matched_baseline="long")
    cfg.only_arms = ["warm"]
    assert [a.name for a in selected_arms(parse_arms(cfg), cfg)] == ["initial", "dpo_source", "long", "warm"]
    with pytest.raises(ConfigError, match="arms.warm.matched_baseline: 'nope' is not one of the arms"):
        parse_arms(_cfg(matched_baseline="nope"))
