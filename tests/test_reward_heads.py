"""Reward heads on frozen features: importance-weighted Bradley-Terry, the bootstrap ensemble from one
feature extraction, and their use as a reward model by the labeller and the RL scorer."""

import json

import numpy as np
import pytest

from shiftalign.cli import main
from shiftalign.models.reward_heads import RewardHeads, fit_heads, is_heads_dir

from conftest import pref_rows, write_jsonl


def _pairs(rng, centre, n):
    """Pairs of responses near ``centre`` with gold reward x^2, labelled by the gold (no noise);
    features phi(x) = [x, 1]: a linear reward, misspecified for x^2, so the best fit depends on where
    the pairs lie."""
    loc = rng.normal(centre, 0.5, n)
    a, b = loc + rng.normal(0, 0.3, n), loc + rng.normal(0, 0.3, n)
    better = a ** 2 > b ** 2
    ch, rj = np.where(better, a, b), np.where(better, b, a)
    phi = lambda x: np.stack([x, np.ones_like(x)], 1)  # noqa: E731
    return phi(ch), phi(rj), loc


def test_importance_weighted_bt_equals_unweighted_at_uniform_weights_and_moves_toward_the_target_fit():
    rng = np.random.default_rng(0)
    cs, rs, loc = _pairs(rng, -1.0, 2000)  # source pairs around x = -1: reward falls with x there
    ct, rt, _ = _pairs(rng, 1.0, 2000)  # target pairs around x = +1: reward rises with x
    plain, _, C = fit_heads(cs, rs, None, heads=1, l2=1.0)
    uniform, _, _ = fit_heads(cs, rs, np.full(len(cs), 3.0), heads=1, l2=1.0)
    assert np.allclose(plain, uniform, atol=1e-8)
    target, _, _ = fit_heads(ct, rt, None, heads=1, l2=1.0)
    # the true density ratio of the pairs' locations, N(1, 0.5) / N(-1, 0.5)
    w = np.exp((-(loc - 1.0) ** 2 + (loc + 1.0) ** 2) / (2 * 0.25))
    weighted, _, _ = fit_heads(cs, rs, w, heads=1, l2=1.0)
    assert plain[0, 0] < 0 < target[0, 0]  # the two domains' fits disagree on the slope
    assert abs(weighted[0, 0] - target[0, 0]) < abs(plain[0, 0] - target[0, 0])
    assert weighted[0, 0] > 0  # re-weighted toward x = +1, the fitted slope turns the target's way


def test_bootstrap_heads_differ_and_the_penalty_is_chosen_by_cross_validation():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 5))
    Y = rng.normal(size=(400, 5))
    true = np.array([2.0, -1.0, 0.0, 0.0, 0.5])
    better = (X - Y) @ true + rng.logistic(size=400) > 0
    ch, rj = np.where(better[:, None], X, Y), np.where(better[:, None], Y, X)
    theta, scale, C = fit_heads(ch, rj, None, heads=4, seed=0)
    assert theta.shape == (4, 5) and scale.shape == (5,) and C > 0
    assert not np.allclose(theta[0], theta[1])  # different resamples
    mean = theta.mean(0) / scale
    assert np.corrcoef(mean, true)[0, 1] > 0.95


def _fit(tmp_path, tiny_dir, **over):
    rows = pref_rows()
    write_jsonl(tmp_path / "pairs.jsonl", rows)
    cfg = {"pairs": str(tmp_path / "pairs.jsonl"), "output_dir": str(tmp_path / "heads"),
           "features": {"kind": "hidden", "model": str(tiny_dir)}, "heads": 4, "l2": 1.0,
           "held_out": str(tmp_path / "pairs.jsonl"), **over}
    (tmp_path / "heads.yaml").write_text(json.dumps(cfg))
    return main(["heads", "fit", str(tmp_path / "heads.yaml")])


def test_heads_fit_extracts_features_once_for_every_head(tmp_path, tiny_dir, monkeypatch):
    import shiftalign.recipes.reward_heads as recipe

    calls = []
    real = recipe.extract
    monkeypatch.setattr(recipe, "extract", lambda texts, *a: calls.append(len(texts)) or real(texts, *a))
    assert _fit(tmp_path, tiny_dir, held_out=None) == 0
    n = len(pref_rows())
    assert calls == [2 * n]  # chosen and rejected of every pair, in one extraction, for all 4 heads
    heads = RewardHeads.load(tmp_path / "heads")
    assert is_heads_dir(tmp_path / "heads") and heads.theta.shape[0] == 4
    info = json.loads((tmp_path / "heads" / "reward_heads.json").read_text())
    assert info["pairs"] == n and 0 <= info["train_accuracy"] <= 1


def test_heads_are_a_reward_model_for_the_labeller_and_the_scorer(tmp_path, tiny_dir):
    from shiftalign.data.load import load_examples
    from shiftalign.labeling.reward_model import RewardLabelConfig, score_lists
    from shiftalign.rl.scorers import make_scorer

    assert _fit(tmp_path, tiny_dir) == 0
    path = str(tmp_path / "heads")
    heads = RewardHeads.load(path)
    rows = [{"id": f"s{i}", "prompt": "Say something.", "completion": t} for i, t in enumerate(["Good!", "Bad.", "Fine"])]
    write_jsonl(tmp_path / "samples.jsonl", rows)
    examples = load_examples(str(tmp_path / "samples.jsonl"), "sft")
    lists = score_lists(path, examples, RewardLabelConfig(models=[path]))
    assert len(lists) == 4 and all(len(x) == 3 for x in lists)  # each head is a model of the ensemble
    direct = heads.score_texts([("Say something.", t) for t in ["Good!", "Bad.", "Fine"]], None)
    assert np.allclose(lists, direct)
    scorer = make_scorer({"name": "reward_model", "path": path})
    assert np.allclose(scorer(["Say something."] * 3, ["Good!", "Bad.", "Fine"]), direct.mean(0))


def test_bad_weights_are_refused():
    x = np.zeros((20, 2))
    with pytest.raises(Exception, match="weights"):
        fit_heads(x + 1, x, np.r_[np.ones(19), -1.0])
