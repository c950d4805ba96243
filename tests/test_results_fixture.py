"""The rows and the verdict of an experiment, rebuilt from a stored small experiment
(tests/fixtures/experiment_small: its per-prompt evaluation.json and its arms' stage records, made by
tests/fixtures/make_experiment_fixture.py), equal the pinned ones to 1e-12: as built from the inputs
(expected.json) and with its oracles and one method lifted on every prompt so that the gap-recovery branches
are taken (expected_lifted.json). Both are written by ``python tests/test_results_fixture.py``.

expected.json first held what the experiment itself wrote, and the reshaping of the experiment layer kept
it to 1e-12; it was pinned again when the intervals came to include the training-seed variance
(experiment.statistics), and again when a warm-started arm's frontier curve came to start at the policy it
starts from instead of running straight from the initial policy (its matched-KL numbers only), and when the
source-only frontier came to count mixtures of the baseline arms' points (frontier.py, eq. 1; matched-KL numbers
only), and when the differences' intervals became generalised pivotal ones (statistics.py, eq. 3): the
Satterthwaite df had collapsed here, giving `dpo_classifier` [-0.743, +0.756], now [-0.031, +0.045]."""

import copy
import json
import math
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent / "fixtures" / "experiment_small"
LIFT = {"oracle": 0.05, "oracle_warm": 0.08, "rm_iterative_warm": 0.06, "rm_iterative_warm@1": 0.05}


def inputs():
    evaluation = json.loads((HERE / "evaluation.json").read_text())
    stages = {f.stem[len("arm_"):]: json.loads(f.read_text()) for f in sorted((HERE / "stages").glob("arm_*.json"))}
    return evaluation, stages, yaml.safe_load((HERE / "arms.yaml").read_text())["arms"]


def lifted(evaluation: dict) -> dict:
    ev = copy.deepcopy(evaluation)
    for name, by in LIFT.items():
        p = ev["policies"][name]
        p["gold_per_prompt"] = [g + by for g in p["gold_per_prompt"]]
        p["gold_mean"] += by
    return ev


def build(evaluation: dict, stages: dict, arms: list) -> dict:
    from shiftalign.experiment.arms import ArmResult
    from shiftalign.experiment.config import ExperimentConfig, parse_arms
    from shiftalign.experiment.results import arm_rows
    from shiftalign.experiment.run import ExperimentRun
    from shiftalign.experiment.verdict import verdict

    cfg = ExperimentConfig(arms=arms, baseline_arm="dpo_source", oracle_arm="oracle")
    run = ExperimentRun(cfg, parse_arms(cfg), {n: ArmResult.from_record(s) for n, s in stages.items()}, evaluation,
                        stages=[{"stage": f"arm_{n}", "seconds": s["seconds"]} for n, s in stages.items()])
    rows = arm_rows(run)
    lines = verdict(rows, {a.name: a.kind for a in run.arms}, cfg.baseline_arm, cfg.oracle_arm, run.gold_name,
                    {a.name: a.role for a in run.arms})
    return json.loads(json.dumps({"rows": rows, "verdict": lines}))


def test_a_warm_started_arms_curve_starts_at_the_policy_it_starts_from():
    """rm_iterative_warm starts from dpo_source: its curve runs initial policy -> dpo_source's final policy (each
    replicate its own seed's) -> its points, so at KLs below its start it is not a straight line from the
    initial policy; a cold-started arm's curve has no such point."""
    import numpy as np

    from shiftalign.experiment.arms import ArmResult
    from shiftalign.experiment.config import ExperimentConfig, parse_arms
    from shiftalign.experiment.results import Readings, curve_of
    from shiftalign.experiment.run import ExperimentRun

    evaluation, stages, arms = inputs()
    cfg = ExperimentConfig(arms=arms, baseline_arm="dpo_source", oracle_arm="oracle")
    run = ExperimentRun(cfg, parse_arms(cfg), {n: ArmResult.from_record(s) for n, s in stages.items()}, evaluation,
                        stages=[])
    r = Readings(run)
    warm = curve_of(next(a for a in run.arms if a.name == "rm_iterative_warm"), r)
    start = [p for p in warm.points if p.label == "start (dpo_source)"]
    assert len(start) == 1 and not start[0].initial
    pol = evaluation["policies"]
    want = [pol[n]["gold_per_prompt"] for n in r.evaluated["dpo_source"]][:len(r.evaluated["rm_iterative_warm"])]
    np.testing.assert_array_equal(start[0].gold, np.array(want))
    cold = curve_of(next(a for a in run.arms if a.name == "oracle"), r)
    assert not any(p.label.startswith("start") for p in cold.points)


def assert_close(got, want, where="") -> None:
    if isinstance(want, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        assert math.isclose(got, want, rel_tol=0, abs_tol=1e-12), f"{where}: {got!r} != {want!r}"
    elif isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), f"{where}: keys {sorted(got)} != {sorted(want)}"
        for k in want:
            assert_close(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: {got!r} != {want!r}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_close(g, w, f"{where}[{i}]")
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def test_rows_and_verdict_equal_the_pinned_ones():
    assert_close(build(*inputs()), json.loads((HERE / "expected.json").read_text()))


def test_rows_and_verdict_of_the_lifted_fixture_are_pinned():
    evaluation, stages, arms = inputs()
    got = build(lifted(evaluation), stages, arms)
    assert any(r.get("gap_recovery") not in (None, 0.0) for r in got["rows"])  # the branches it is here for
    assert_close(got, json.loads((HERE / "expected_lifted.json").read_text()))


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parents[2] / "src"))
    evaluation, stages, arms = inputs()
    (HERE / "expected.json").write_text(json.dumps(build(evaluation, stages, arms), indent=1) + "\n")
    (HERE / "expected_lifted.json").write_text(json.dumps(build(lifted(evaluation), stages, arms), indent=1) + "\n")
