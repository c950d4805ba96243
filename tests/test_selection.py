"""Gold-free selection (experiment.selection, experiment.candidates): the conservative selector recovers the better
of two candidates where the reward model's mean picks the over-optimised one; it abstains, saying why, when every
candidate's samples have left the reward model's training distribution; the regret and its interval follow their
definition on hand-worked cases and cover at their level; the candidates are the method and source-only arms'
policies; the stage scores the evaluation's samples with the reward heads; the results and the report show the
picks beside the gold-best candidate, and say so when there is no selection."""

import json
from pathlib import Path

import numpy as np
import pytest

from shiftalign.experiment.selection import MIN_ESS, SELECTORS, Evidence, grade, regret

from conftest import write_jsonl

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "experiment_small"


def _candidate(name, kl, member_scores, ess):
    return {"name": name, **Evidence.from_scores(name, kl, member_scores, ess).record()}


def over_optimised_and_honest(seed=0, prompts=50, per_prompt=4, members=5):
    """Candidate A was pushed against the reward model: its members score it 1.5 above its gold on average but
    disagree (sd 2 between members); B's members agree (sd 0.1) and score it 0.5 above its gold. A's gold is
    0.2, B's 0.6: B is better, the reward model's mean says A."""
    rng = np.random.default_rng(seed)
    n = prompts * per_prompt
    gold, scores = {}, {}
    for name, g, bias, sd in (("A", 0.2, 1.5, 2.0), ("B", 0.6, 0.5, 0.1)):
        g_sample = g + rng.normal(0, 0.1, n)
        scores[name] = g_sample + bias + rng.normal(0, sd, (members, n))
        gold[name] = g_sample.reshape(prompts, per_prompt).mean(1)
    record = {"candidates": [_candidate("A", 4.0, scores["A"], 0.5), _candidate("B", 1.0, scores["B"], 0.5)]}
    return record, gold, scores


def test_conservative_recovers_the_better_candidate_where_the_reward_models_mean_picks_the_over_optimised_one():
    record, gold, scores = over_optimised_and_honest()
    out = grade(record, gold, n=1000)
    picks = {name: s["pick"] for name, s in out["selectors"].items()}
    assert picks == {"reward_model": "A", "most_trained": "A", "conservative": "B"}
    assert out["gold_best"] == "B" and out["gold_best_gold"] == pytest.approx(gold["B"].mean())
    rm, cons = out["selectors"]["reward_model"], out["selectors"]["conservative"]
    assert rm["regret"] == pytest.approx(gold["B"].mean() - gold["A"].mean()) and rm["regret_ci95"][0] > 0.3
    assert cons["regret"] == 0.0 and cons["regret_ci95"] == [0.0, 0.0] and cons["gold"] == pytest.approx(gold["B"].mean())
    # the estimates are eq. 1: the mean of the members' mean, and of mean - 1 sd (population sd over members)
    a, b = record["candidates"]
    assert a["score"] == pytest.approx(scores["A"].mean()) == rm["estimate"]
    assert b["lcb"] == pytest.approx((scores["B"].mean(0) - scores["B"].std(0)).mean()) == cons["estimate"]
    assert a["lcb"] < b["lcb"] < b["score"] < a["score"]


def test_a_worked_lower_bound():
    e = Evidence.from_scores("x", 0.0, [[1.0, 2.0], [3.0, 2.0], [5.0, 2.0]], 1.0)
    assert e.score == pytest.approx(2.5) and e.lcb == pytest.approx((3 - np.sqrt(8 / 3) + 2.0) / 2)
    assert e.spread == pytest.approx(np.sqrt(8 / 3) / 2) and e.members == 3


def test_conservative_abstains_when_every_candidate_has_left_the_reward_models_training_distribution():
    record, gold, _ = over_optimised_and_honest()
    low = {"candidates": [{**c, "ess_fraction": 0.05 + 0.01 * i} for i, c in enumerate(record["candidates"])]}
    cons = grade(low, gold, n=200)["selectors"]["conservative"]
    assert cons["pick"] is None and cons["regret"] is None
    assert "abstains" in cons["reason"] and f"below {MIN_ESS:g} for all 2" in cons["reason"]
    assert "largest is 0.06" in cons["reason"]
    assert set(cons["excluded"]) == {"A", "B"} and "ESS/N 0.05 < 0.1" in cons["excluded"]["A"]
    # the trivial selectors still pick: they do not read the overlap
    assert grade(low, gold, n=200)["selectors"]["reward_model"]["pick"] == "A"
    # one candidate below the threshold is left out, the other picked even with a lower bound below it
    flipped = {"candidates": [{**record["candidates"][0], "ess_fraction": 0.5, "lcb": 9.0},
                              {**record["candidates"][1], "ess_fraction": 0.09}]}
    cons = SELECTORS.get("conservative").choose([Evidence.from_record(c) for c in flipped["candidates"]])
    assert cons.choice == "A" and set(cons.excluded) == {"B"}
    # a single reward model has no spread to bound
    single = [Evidence.from_scores("s", 1.0, [[1.0, 2.0]], 0.9)]
    one = SELECTORS.get("conservative").choose(single)
    assert one.choice is None and "1 model" in one.reason
    assert SELECTORS.get("reward_model").choose(single).choice == "s"


def test_overlap_is_low_for_samples_far_from_the_source_and_high_for_samples_like_it():
    from shiftalign.experiment.candidates import overlap

    rng = np.random.default_rng(0)
    source = rng.normal(0, 1, (300, 4))
    assert overlap(source, rng.normal(0, 1, (100, 4))) > 0.5
    assert overlap(source, rng.normal(3, 1, (100, 4))) < MIN_ESS
    assert overlap(source, rng.normal(0, 1, (1, 4))) is None


def test_regret_and_its_interval_on_hand_worked_cases():
    # per-prompt differences [0, 2]: regret 1; a resample of the two prompts has mean 0, 1 or 2 with
    # probabilities 1/4, 1/2, 1/4, so the 2.5 % and 97.5 % points are 0 and 2
    assert regret([1.0, 3.0], [1.0, 1.0], 4000) == pytest.approx((1.0, 0.0, 2.0))
    # a constant difference has no spread over prompts
    assert regret([0.5, 0.7, 0.9], [0.25, 0.45, 0.65], 500) == pytest.approx((0.25, 0.25, 0.25))


def test_the_regret_interval_covers_at_its_level():
    """Prompts drawn from a population in which the two candidates' gold differs by 0.1 on average: the paired
    prompt bootstrap's 95 % interval covers it at about its level (measured: 0.93 over 400 draws of 60 prompts;
    a percentile interval of a mean runs a little short at this size)."""
    rng = np.random.default_rng(1)
    covered = []
    for rep in range(400):
        pick = rng.normal(0.5, 0.3, 60)
        best = pick + 0.1 + rng.normal(0, 0.4, 60)
        _, lo, hi = regret(best, pick, 1000, rep)
        covered.append(lo <= 0.1 <= hi)
    assert 0.91 <= np.mean(covered) <= 0.98


def _fixture_run(selection=None):
    from test_results_fixture import inputs

    from shiftalign.experiment.arms import ArmResult
    from shiftalign.experiment.config import ExperimentConfig, parse_arms
    from shiftalign.experiment.run import ExperimentRun

    evaluation, stages, arms = inputs()
    cfg = ExperimentConfig(arms=arms, baseline_arm="dpo_source", oracle_arm="oracle")
    return ExperimentRun(cfg, parse_arms(cfg), {n: ArmResult.from_record(s) for n, s in stages.items()}, evaluation,
                         stages=[{"stage": f"arm_{n}", "seconds": s["seconds"]} for n, s in stages.items()],
                         selection=selection)


def test_candidates_are_the_method_and_source_only_arms_policies(tmp_path):
    from shiftalign.experiment.arms import ArmResult
    from shiftalign.experiment.candidates import candidate_gold, candidates

    run = _fixture_run()
    names = [c["name"] for c in candidates(run.arms, run.results, run.evaluation, tmp_path)]
    assert names == ["dpo_source", "dpo_source@1", "dpo_classifier", "rm_pseudo", "rm_iterative_warm",
                     "rm_iterative_warm@1", "dpo_source_long", "dpo_source_long@1"]  # no oracle, control, initial
    point = {"label": "step 2/4", "gold_per_prompt": [0.1, 0.2], "kl_per_prompt": [1.0, 2.0], "kl_to_baseline": 1.5}
    results = {**run.results, "rm_pseudo": ArmResult("m", points=[point])}
    got = [c for c in candidates(run.arms, results, run.evaluation, tmp_path) if c["arm"] == "rm_pseudo"]
    assert [(c["name"], c["point"], c["kl"]) for c in got] == [("rm_pseudo step 2/4", "step 2/4", 1.5),
                                                               ("rm_pseudo", None, run.evaluation["policies"]["rm_pseudo"]["kl_to_baseline"])]
    assert got[0]["samples"] == str(tmp_path / "points" / "samples" / "rm_pseudo step 2/4.jsonl")
    assert got[1]["samples"] == str(tmp_path / "evaluate" / "samples" / "rm_pseudo.jsonl")
    run.results = results
    assert candidate_gold(run, got[0]) == [0.1, 0.2]
    assert candidate_gold(run, got[1]) == run.evaluation["policies"]["rm_pseudo"]["gold_per_prompt"]


def test_the_stage_scores_the_evaluations_samples_with_the_reward_heads(tmp_path):
    """Without reading gold: every member's score of each candidate's samples, and ESS/N on the heads' features;
    a candidate without samples is listed as unscored."""
    from shiftalign.experiment.candidates import gather
    from shiftalign.models.features import FeatureConfig, extract
    from shiftalign.models.reward_heads import RewardHeads
    from shiftalign.models.tiny import save_tiny_encoder

    features = FeatureConfig(kind="embedding", model=save_tiny_encoder(tmp_path / "enc"))
    d = extract([("a", "b")], features, None).shape[1]
    rng = np.random.default_rng(0)
    RewardHeads(rng.normal(size=(3, d)), np.ones(d), features, 1.0, {}).save(tmp_path / "rm")
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"id": f"s{i}", "prompt": f"how do I fix {i}?",
                                                    "chosen": "a good fix", "rejected": "no"} for i in range(8)])
    samples = write_jsonl(tmp_path / "s.jsonl", [{"id": f"e{i}-{j}", "prompt_id": f"e{i}", "prompt": f"what about {i}?",
                                                  "completion": "so good" if j else "hello"}
                                                 for i in range(4) for j in range(2)])
    cands = [{"name": "x", "arm": "x", "replicate": "x", "point": None, "kl": 0.3, "samples": samples},
             {"name": "y", "arm": "y", "replicate": "y", "point": None, "kl": 0.1, "samples": str(tmp_path / "none.jsonl")}]
    record = gather(cands, str(tmp_path / "rm"), pairs)
    (c,) = record["candidates"]
    heads = RewardHeads.load(tmp_path / "rm")
    rows = [json.loads(line) for line in Path(samples).read_text().splitlines()]
    want = heads.score_texts([(r["prompt"], r["completion"]) for r in rows], None)
    assert c["members"] == 3 == record["members"] and c["samples_n"] == 8
    assert c["score"] == pytest.approx(want.mean()) and c["lcb"] == pytest.approx((want.mean(0) - want.std(0)).mean())
    assert 0 < c["ess_fraction"] <= 1 and c["kl"] == 0.3
    assert "none.jsonl" in record["unscored"]["y"]


def test_results_and_report_show_each_selectors_pick_beside_the_gold_best(tmp_path):
    from shiftalign.experiment.report import write_outputs

    ev = json.loads((FIXTURE / "evaluation.json").read_text())["policies"]
    names = ["dpo_source", "dpo_classifier", "rm_pseudo"]
    rng = np.random.default_rng(0)
    record = {"reward_model": "rm", "members": 4, "lcb_lambda": 1.0, "min_ess": 0.1, "unscored": {},
              "candidates": [{"arm": n, "replicate": n, "point": None, "samples_n": 8,
                              **_candidate(n, ev[n]["kl_to_baseline"], rng.normal(i, 1 + 3 * (i == 2), (4, 8)), 0.5)}
                             for i, n in enumerate(names)]}
    result = write_outputs(tmp_path, _fixture_run(record))
    sel = result["selection"]
    best = max(names, key=lambda n: ev[n]["gold_mean"])
    assert sel["gold_best"] == best and sel["gold_best_gold"] == pytest.approx(ev[best]["gold_mean"])
    for s in sel["selectors"].values():
        assert s["gold"] == pytest.approx(ev[s["pick"]]["gold_mean"])
        assert s["regret"] == pytest.approx(ev[best]["gold_mean"] - ev[s["pick"]]["gold_mean"])
        assert s["regret_ci95"][0] <= s["regret"] <= s["regret_ci95"][1]
    assert sel["selectors"]["reward_model"]["pick"] == "rm_pseudo" != sel["selectors"]["conservative"]["pick"]
    assert json.loads((tmp_path / "results.json").read_text())["selection"]["gold_best"] == best
    md, html = (tmp_path / "results.md").read_text(), (tmp_path / "report.html").read_text()
    assert "| conservative | " + sel["selectors"]["conservative"]["pick"] in md and "gold-best candidate" in md
    assert "Gold-free selection" in html and "regret" in html
    # no selection record (the pinned fixture has none): said, not shown as numbers
    result = write_outputs(tmp_path / "none", _fixture_run())
    assert "no gold-free selection" in result["selection"]["skipped"]
    assert "Gold-free selection: none (" in (tmp_path / "none" / "results.md").read_text()
