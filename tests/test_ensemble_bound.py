"""Conservative ensembles (``ops.ensemble_bound``, after Coste et al., 2024): the lcb and worst bounds of K member
scores, pseudo-labels from the bound of each pair's score difference, the labeller's and the pseudo arm's
options, and the RL reward of a directory of reward heads bounded per response. Hand-worked numbers
throughout; no model is run."""

import math
from types import SimpleNamespace

import numpy as np
import pytest

from shiftalign.data.schema import Example
from shiftalign.errors import ConfigError
from shiftalign.labeling.pairs import pairs_from_scores
from shiftalign.ops.ensemble_bound import bounded
from shiftalign.recipes.iterate import confidence_weight

# Three members' scores of three samples (columns): sample 0 they rank alike, sample 1 they split on.
MEMBERS = [[1.0, 2.0, 4.0],
           [3.0, 2.0, 4.0],
           [5.0, 2.0, 4.0]]
S8 = math.sqrt(8 / 3)  # population std of (1, 3, 5) and of (3, -1, 1)


def test_lcb_is_the_mean_less_lambda_population_stds_and_worst_is_the_min():
    assert bounded(MEMBERS, "mean").tolist() == pytest.approx([3.0, 2.0, 4.0])
    assert bounded(MEMBERS, "lcb", 1.0).tolist() == pytest.approx([3 - S8, 2.0, 4.0])
    assert bounded(MEMBERS, "lcb", 0.5).tolist() == pytest.approx([3 - 0.5 * S8, 2.0, 4.0])
    assert bounded(MEMBERS, "lcb", 0.0).tolist() == pytest.approx([3.0, 2.0, 4.0])
    assert bounded(MEMBERS, "worst").tolist() == [1.0, 2.0, 4.0]
    assert bounded([3.0, -1.0, 1.0], "lcb", 2.0) == pytest.approx(1 - 2 * S8)  # one pair's K differences
    with pytest.raises(ConfigError, match="bound: expected one of mean, lcb, worst"):
        bounded(MEMBERS, "median")


def _groups():
    """Three prompts of two samples each; scores per member below (K = 3)."""
    return [[Example(id=f"{p}{k}", prompt=f"q{p}", completions=[f"response {p}{k}"]) for k in range(2)]
            for p in "abc"]


# Per member: samples a0 a1 b0 b1 c0 c1.
#   a: differences a0 - a1 = (2, 2, 2): every member agrees, no spread.
#   b: differences b0 - b1 = (3, -1, 1): mean 1, population std sqrt(8/3); the second member disagrees.
#   c: differences c0 - c1 = (3, 1, 4): all agree on the order, by different amounts; mean 8/3, min 1.
PER_MODEL = [[2.0, 0.0, 3.0, 0.0, 3.0, 0.0],
             [3.0, 1.0, 0.0, 1.0, 2.0, 1.0],
             [4.0, 2.0, 3.0, 2.0, 5.0, 1.0]]
C_STD = math.sqrt(42 / 27)  # population std of (3, 1, 4)


def _pairs(bound="mean", lam=1.0, margin=0.0, per_model=PER_MODEL):
    pairs, dropped = pairs_from_scores(_groups(), per_model, "all", margin, None, 0, {}, None, bound, lam)
    return {p["prompt"]: p for p in pairs}, {d["prompt"]: d for d in dropped}


def test_pairs_under_the_mean_are_as_before():
    kept, dropped = _pairs()
    assert sorted(kept) == ["qa", "qb", "qc"] and not dropped
    assert [kept[q]["provenance"]["margin"] for q in ("qa", "qb", "qc")] == pytest.approx([2.0, 1.0, 8 / 3])
    assert all("mean_margin" not in p["provenance"] and "bound" not in p["provenance"] for p in kept.values())


def test_lcb_drops_the_pair_the_members_split_on_and_keeps_the_agreed_ones_in_order():
    kept, dropped = _pairs("lcb", 1.0)
    assert sorted(kept) == ["qa", "qc"]
    assert dropped["qb"]["reason"] == "ensemble bound"
    assert dropped["qb"]["bounded_margin"] == pytest.approx(1 - S8) and dropped["qb"]["margin"] == pytest.approx(1.0)
    a, c = kept["qa"], kept["qc"]
    assert (a["chosen_id"], a["rejected_id"], c["chosen_id"], c["rejected_id"]) == ("a0", "a1", "c0", "c1")
    assert a["provenance"]["margin"] == pytest.approx(2.0)  # no spread: the bound is the mean
    assert c["provenance"]["margin"] == pytest.approx(8 / 3 - C_STD) and c["provenance"]["mean_margin"] == pytest.approx(8 / 3)
    assert c["provenance"]["confidence"] == pytest.approx(1 / (1 + math.exp(-(8 / 3 - C_STD))))
    assert (c["provenance"]["bound"], c["provenance"]["lcb_lambda"]) == ("lcb", 1.0)


def test_a_smaller_lambda_keeps_the_split_pair_with_a_lower_confidence_weight_than_the_mean_gives():
    kept, _ = _pairs("lcb", 0.25)
    b = kept["qb"]
    assert (b["chosen_id"], b["rejected_id"]) == ("b0", "b1")
    assert b["provenance"]["margin"] == pytest.approx(1 - 0.25 * S8)  # 0.5918
    weight = confidence_weight(b["provenance"], 1.0)
    assert weight == pytest.approx(math.tanh((1 - 0.25 * S8) / 2))
    mean_weight = confidence_weight(_pairs()[0]["qb"]["provenance"], 1.0)
    assert mean_weight == pytest.approx(math.tanh(0.5)) and weight < mean_weight - 0.09
    # The margin applies to the bound: 0.5918 is above 0.5 and not above 0.6 (where the mean, 1, still is).
    assert "qb" in _pairs("lcb", 0.25, margin=0.5)[0]
    kept, dropped = _pairs("lcb", 0.25, margin=0.6)
    assert "qb" not in kept and dropped["qb"]["reason"] == "ensemble bound"


def test_worst_keeps_a_pair_only_if_every_member_orders_it_so_with_the_smallest_difference_as_margin():
    kept, dropped = _pairs("worst")
    assert sorted(kept) == ["qa", "qc"] and dropped["qb"]["bounded_margin"] == -1.0
    assert (kept["qa"]["provenance"]["margin"], kept["qc"]["provenance"]["margin"]) == (2.0, 1.0)
    assert "lcb_lambda" not in kept["qc"]["provenance"]
    kept, dropped = _pairs("worst", margin=1.0)  # c's weakest member prefers it by 1, not more
    assert sorted(kept) == ["qa"] and dropped["qc"]["reason"] == "ensemble bound"


def test_a_bound_of_one_model_is_refused():
    with pytest.raises(ConfigError, match="lcb needs an ensemble"):
        _pairs("lcb", per_model=PER_MODEL[:1])
    with pytest.raises(ConfigError, match="lcb_lambda: expected a finite number >= 0"):
        _pairs("lcb", -1.0)


def test_the_labeller_reads_the_bound_and_refuses_a_single_model_before_scoring(monkeypatch):
    from shiftalign.config import from_dict
    from shiftalign.labeling import reward_model
    from shiftalign.recipes.label import LabelConfig

    cfg = from_dict(LabelConfig, {"reward_model": {"models": ["rm"], "bound": "worst", "lcb_lambda": 2}})
    assert (cfg.reward_model.bound, cfg.reward_model.lcb_lambda) == ("worst", 2)
    with pytest.raises(ConfigError, match="reward_model.bound: expected one of mean, lcb, worst, got 'min'"):
        from_dict(LabelConfig, {"reward_model": {"bound": "min"}})
    with pytest.raises(ConfigError, match="reward_model.lcb_lambda"):
        from_dict(LabelConfig, {"reward_model": {"lcb_lambda": float("nan")}})
    monkeypatch.setattr(reward_model, "score_lists", lambda *a: pytest.fail("scored before the check"))
    with pytest.raises(ConfigError, match=r"worst needs an ensemble.*\['rm'\] gives 1 model"):
        reward_model.label([], cfg.reward_model)


def test_the_pseudo_arm_option_parses_is_checked_and_keeps_stage_keys_at_its_default():
    from shiftalign.experiment.arms.pseudo import PseudoOptions, label_settings, run
    from shiftalign.experiment.config import ExperimentConfig, parse_arms, written_form
    from shiftalign.experiment.engine import arm_keys

    def arms(**opts):
        cfg = ExperimentConfig(arms=[{"name": "initial", "kind": "initial"}, {"name": "dpo_source", "kind": "dpo"},
                                     {"name": "p", "kind": "pseudo", "confidence_temperature": 1.0, **opts}],
                               oracle_arm=None)
        return parse_arms(cfg)

    plain = arm_keys(arms())["p"]
    assert arm_keys(arms(bound="mean", lcb_lambda=1.0))["p"] == plain  # the defaults written out: same key
    assert arm_keys(arms(bound="lcb"))["p"] != plain and arm_keys(arms(bound="lcb", lcb_lambda=2.0))["p"] != \
        arm_keys(arms(bound="lcb"))["p"]
    assert "bound" not in written_form(PseudoOptions, {}) and "lcb_lambda" not in written_form(PseudoOptions, {})
    opts = next(a for a in arms(bound="lcb", lcb_lambda=0.5) if a.name == "p").options
    ctx = SimpleNamespace(cfg=SimpleNamespace(gold={"name": "vader"}, seed=7, progress=False, wrap_text_as_chat=False))
    rm = label_settings(ctx, "p", opts, "rm").reward_model
    assert (rm.bound, rm.lcb_lambda) == ("lcb", 0.5)
    with pytest.raises(ConfigError, match=r"arms.p.bound: expected one of mean, lcb, worst, got 'lowest'"):
        arms(bound="lowest")
    with pytest.raises(ConfigError, match=r"arms.p.lcb_lambda: expected a finite number >= 0"):
        arms(lcb_lambda=-0.5)
    with pytest.raises(ConfigError, match="bound: a bound of the reward model's ensemble needs labeller: reward_model"):
        PseudoOptions(labeller="gold", bound="worst")
    # A single reward model (not a directory of heads) is refused before anything is trained or sampled.
    with pytest.raises(ConfigError, match=r"lcb needs an ensemble.*arms.p: the experiment's reward model gives 1"):
        run(SimpleNamespace(cfg=ctx.cfg, reward_model="single-rm"), "p", opts)


def _heads_dir(tmp_path, monkeypatch, theta):
    """A directory of reward heads with the given (K, 2) theta, over features looked up per response:
    "x" -> (1, 0), "y" -> (0, 1); so head k scores x as theta[k, 0] and y as theta[k, 1]."""
    from shiftalign.models import reward_heads
    from shiftalign.models.features import FeatureConfig

    table = {"x": [1.0, 0.0], "y": [0.0, 1.0]}
    monkeypatch.setattr(reward_heads, "extract", lambda texts, features, cache: np.array([table[r] for _, r in texts]))
    reward_heads.RewardHeads(np.array(theta, np.float64), np.ones(2), FeatureConfig(), 1.0, {}).save(tmp_path / "heads")
    return str(tmp_path / "heads")


def test_the_rl_reward_of_a_heads_ensemble_is_bounded_per_response(tmp_path, monkeypatch):
    from shiftalign.rl.scorers import make_scorer

    path = _heads_dir(tmp_path, monkeypatch, [[1.0, 2.0], [3.0, 2.0], [5.0, 2.0]])  # x: (1, 3, 5), y: (2, 2, 2)
    score = lambda **kw: make_scorer({"name": "reward_model", "path": path, **kw})(["p", "p"], ["x", "y"])  # noqa: E731
    assert score() == pytest.approx([3.0, 2.0])
    assert score(bound="lcb", lcb_lambda=0.5) == pytest.approx([3 - 0.5 * S8, 2.0])
    assert score(bound="lcb") == pytest.approx([3 - S8, 2.0])  # lambda 1 by default: x falls below y
    assert score(bound="worst") == [1.0, 2.0]
    with pytest.raises(ConfigError, match="scorer reward_model: bound: expected one of mean, lcb, worst"):
        score(bound="min")


def test_the_rl_reward_refuses_a_bound_without_an_ensemble(tmp_path, monkeypatch):
    from shiftalign.rl.scorers import make_scorer

    with pytest.raises(ConfigError, match=r"lcb needs an ensemble.*a single reward model, not a directory of heads"):
        make_scorer({"name": "reward_model", "path": str(tmp_path / "rm"), "bound": "lcb"})
    one = _heads_dir(tmp_path, monkeypatch, [[1.0, 2.0]])
    with pytest.raises(ConfigError, match="worst needs an ensemble"):
        make_scorer({"name": "reward_model", "path": one, "bound": "worst"})
    assert make_scorer({"name": "reward_model", "path": one})(["p"], ["x"]) == [1.0]  # the mean of one head is fine
