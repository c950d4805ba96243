"""CORAL-aligned reward heads (``models.align``): the map matches the target's moments and makes the domains
harder to tell apart, keeps the source pairs' label information (a map that destroys it is caught), is saved
with the heads and used as CORAL prescribes (raw features at scoring), and is an option of a pseudo arm."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from shiftalign.cli import main
from shiftalign.errors import ConfigError
from shiftalign.models.align import AlignConfig, Alignment, align
from shiftalign.models.reward_heads import RewardHeads, alignment_keeps_labels, fit_heads
from shiftalign.reweight.diagnostics import domain_auc

from conftest import pref_rows, write_jsonl

D = 6
W = np.array([1.5, -1.0, 0.5, 0.0, 0.0, 0.0])  # the gold reward's direction, shared by both domains


def _domains(rng, n_pairs=1500, n_target=2000):
    """Source responses ~ N(0, S S^T) and target responses ~ N(mu, T T^T): different means and covariances.
    Source pairs are labelled by Bradley-Terry on the gold reward W . x."""
    S, T = rng.normal(size=(D, D)), np.diag(rng.uniform(0.3, 3.0, D)) @ rng.normal(size=(D, D))
    mu = rng.normal(0, 2.0, D)
    a, b = rng.normal(size=(n_pairs, D)) @ S, rng.normal(size=(n_pairs, D)) @ S
    better = (a - b) @ W + rng.logistic(size=n_pairs) > 0
    chosen, rejected = np.where(better[:, None], a, b), np.where(better[:, None], b, a)
    return chosen, rejected, rng.normal(size=(n_target, D)) @ T + mu


def test_coral_matches_the_target_moments_and_is_the_identity_between_equal_domains():
    rng = np.random.default_rng(0)
    chosen, rejected, Xt = _domains(rng)
    Xs = np.concatenate([chosen, rejected])
    mapped = align(Xs, Xt, AlignConfig(eps=1e-12)).source(Xs)  # no ridge: the sample moments are matched exactly
    assert np.allclose(mapped.mean(0), Xt.mean(0), atol=1e-8)
    assert np.allclose(np.cov(mapped.T, bias=True), np.cov(Xt.T, bias=True), rtol=1e-5, atol=1e-6)
    assert not np.allclose(np.cov(Xs.T), np.cov(Xt.T), atol=0.5)  # they were apart
    same = align(Xs, Xs, AlignConfig(eps=1.0))
    assert np.allclose(same.matrix, np.eye(D), atol=1e-10) and np.allclose(same.source(Xs), Xs)
    # The ridge is relative to the features' scale: scaling both domains leaves the map the same.
    scaled = align(Xs * 1e-3, Xt * 1e-3, AlignConfig(eps=1.0))
    assert np.allclose(scaled.matrix, align(Xs, Xt, AlignConfig(eps=1.0)).matrix, atol=1e-8)


def test_aligned_source_is_harder_to_tell_from_the_target_than_raw_source():
    rng = np.random.default_rng(1)
    chosen, rejected, Xt = _domains(rng, n_pairs=600, n_target=1200)
    Xs = np.concatenate([chosen, rejected])
    mapped = align(Xs, Xt, AlignConfig()).source(Xs)  # the default ridge
    raw_auc, aligned_auc = domain_auc(Xs, Xt), domain_auc(mapped, Xt)  # a linear classifier sees the means
    assert raw_auc > 0.8 and aligned_auc < 0.6, (raw_auc, aligned_auc)
    # A covariance difference shows in the squares; a small ridge matches it nearly whole, the default in part.
    quad = lambda X: np.concatenate([X, X ** 2], 1)  # noqa: E731
    raw_quad = domain_auc(quad(Xs), quad(Xt))
    aligned_quad = [domain_auc(quad(align(Xs, Xt, AlignConfig(eps=e)).source(Xs)), quad(Xt)) for e in (1.0, 0.01)]
    assert raw_quad > 0.95 and raw_quad > aligned_quad[0] > aligned_quad[1] and aligned_quad[1] < 0.65, \
        (raw_quad, aligned_quad)


def test_heads_on_aligned_features_keep_the_held_out_source_accuracy_and_a_destructive_map_is_caught():
    """Held-out source pairs are mapped as the training pairs were: the check asks whether the map kept
    the pairs' label information, in the space the heads were fitted in."""
    rng = np.random.default_rng(2)
    chosen, rejected, Xt = _domains(rng, n_pairs=3000)
    train, held = slice(0, 2000), slice(2000, None)
    coral = align(np.concatenate([chosen[train], rejected[train]]), Xt, AlignConfig())
    check = alignment_keeps_labels(chosen[train], rejected[train], chosen[held], rejected[held], coral, l2=1.0)
    assert check["kept"] and check["held_out_accuracy_raw_features"] > 0.7
    assert abs(check["held_out_accuracy_aligned"] - check["held_out_accuracy_raw_features"]) <= 0.02
    zero = Alignment("coral", 1.0, np.zeros((D, D)), coral.source_mean, coral.target_mean)  # everything to one point
    check = alignment_keeps_labels(chosen[train], rejected[train], chosen[held], rejected[held], zero, l2=1.0)
    assert not check["kept"] and check["held_out_accuracy_aligned"] == 0.5
    # Deletes just what the labels follow: x -> x - (x . W) (Sigma W)^T / (W^T Sigma W) leaves features
    # uncorrelated with W . x (Gaussian: independent of it), Sigma the source covariance.
    SW = np.cov(np.concatenate([chosen, rejected]).T) @ W
    P = np.eye(D) - np.outer(W, SW) / (W @ SW)
    blind = Alignment("coral", 1.0, P, coral.source_mean, coral.target_mean)
    check = alignment_keeps_labels(chosen[train], rejected[train], chosen[held], rejected[held], blind, l2=1.0)
    assert not check["kept"] and check["held_out_accuracy_aligned"] < 0.6


def test_coral_heads_score_target_pairs_better_when_the_target_is_the_source_recoloured():
    """CORAL's assumption: the target's features are the source's re-coloured, the labels carried along (here a
    latent z labelled by v . z, seen as z s in the source and z t + mu in the target, s and t per-feature
    scales). Heads on the aligned source pairs, applied to raw target features, then order target pairs
    better than heads on the raw source pairs."""
    from shiftalign.metrics import chosen_accuracy

    rng = np.random.default_rng(0)
    s, t, mu, v = rng.uniform(0.3, 3, D), rng.uniform(0.3, 3, D), rng.normal(0, 2, D), rng.normal(size=D)

    def pairs(n, scale, shift):
        za, zb = rng.normal(size=(n, D)), rng.normal(size=(n, D))
        better = ((za - zb) @ v + rng.logistic(size=n) > 0)[:, None]
        return np.where(better, za, zb) * scale + shift, np.where(better, zb, za) * scale + shift

    (sc, sr), (tc, tr) = pairs(2000, s, 0.0), pairs(2000, t, mu)
    coral = align(np.concatenate([sc, sr]), np.concatenate([tc, tr]), AlignConfig(eps=0.01))  # target unlabelled
    accuracy = {}
    for name, (c, r) in {"raw": (sc, sr), "aligned": (coral.source(sc), coral.source(sr))}.items():
        theta, scale, _ = fit_heads(c, r, None, heads=1, l2=1.0)
        accuracy[name] = chosen_accuracy(tc / scale @ theta[0], tr / scale @ theta[0])
    assert accuracy["aligned"] > accuracy["raw"] + 0.03, accuracy


def _fit(tmp_path, tiny_dir, **over):
    write_jsonl(tmp_path / "pairs.jsonl", pref_rows())
    write_jsonl(tmp_path / "samples.jsonl", [{"id": f"s{i}", "prompt": f"tell me about {i}", "completion": t}
                                             for i, t in enumerate(["Sure!", "no", "It is blue.", "maybe later", "?",
                                                                    "A long, long answer here.", "ok ok", "Yes."])])
    cfg = {"pairs": str(tmp_path / "pairs.jsonl"), "output_dir": str(tmp_path / "heads"),
           "features": {"kind": "hidden", "model": str(tiny_dir)}, "heads": 3, "l2": 1.0,
           "held_out": str(tmp_path / "pairs.jsonl"), "align": {"method": "coral", "eps": 1.0},
           "align_target": str(tmp_path / "samples.jsonl"), **over}
    (tmp_path / "heads.yaml").write_text(json.dumps(cfg))
    return main(["heads", "fit", str(tmp_path / "heads.yaml")])


def test_aligned_heads_save_their_map_and_score_raw_texts_the_same_after_reload(tmp_path, tiny_dir):
    from shiftalign.data.load import load_examples
    from shiftalign.labeling.reward_model import RewardLabelConfig, score_lists
    from shiftalign.models.features import FeatureConfig, extract
    from shiftalign.rl.scorers import make_scorer

    assert _fit(tmp_path, tiny_dir) == 0
    path = tmp_path / "heads"
    heads = RewardHeads.load(path)
    info = json.loads((path / "reward_heads.json").read_text())
    assert info["align"] == {"method": "coral", "eps": 1.0} and info["alignment"]["target_rows"] == 8
    assert 0 <= info["alignment"]["domain_auc_after"] <= 1 and "kept" in info["align_check"]
    assert heads.alignment is not None and heads.alignment.matrix.shape == (heads.theta.shape[1],) * 2
    texts = [("Say something.", t) for t in ["Good!", "Bad.", "Fine"]]
    X = extract(texts, FeatureConfig(kind="hidden", model=str(tiny_dir)), None)
    direct = heads.score_texts(texts, None)
    assert np.allclose(direct, heads.scores(X))  # CORAL: target texts are scored on their raw features
    assert not np.allclose(heads.source_scores(X), direct)  # source-domain features go through the map
    assert np.allclose(heads.source_scores(X), heads.scores(heads.alignment.source(X)))
    heads.save(tmp_path / "again")  # save and load: the same map, the same scores
    back = RewardHeads.load(tmp_path / "again")
    for name in ("matrix", "source_mean", "target_mean"):
        assert np.array_equal(getattr(back.alignment, name), getattr(heads.alignment, name))
    assert np.allclose(back.score_texts(texts, None), direct) and np.allclose(back.source_scores(X), heads.source_scores(X))
    # A heads directory like any other: the labeller's ensemble and the RL scorer.
    write_jsonl(tmp_path / "s.jsonl", [{"id": f"s{i}", "prompt": p, "completion": r} for i, (p, r) in enumerate(texts)])
    lists = score_lists(str(path), load_examples(str(tmp_path / "s.jsonl"), "sft"), RewardLabelConfig(models=[str(path)]))
    assert np.allclose(lists, direct)
    assert np.allclose(make_scorer({"name": "reward_model", "path": str(path)})(["Say something."] * 3,
                                                                              [r for _, r in texts]), direct.mean(0))


def test_align_needs_its_target_and_valid_settings():
    from shiftalign.config import from_dict
    from shiftalign.recipes.reward_heads import RewardHeadsConfig

    with pytest.raises(ConfigError, match="align and align_target go together"):
        from_dict(RewardHeadsConfig, {"pairs": "p.jsonl", "align": {"method": "coral"}})
    with pytest.raises(ConfigError, match="align and align_target go together"):
        from_dict(RewardHeadsConfig, {"pairs": "p.jsonl", "align_target": "s.jsonl"})
    with pytest.raises(ConfigError, match="unknown alignment method 'tca'; known: coral"):
        AlignConfig(method="tca")
    for eps in (0.0, -1.0, float("nan")):
        with pytest.raises(ConfigError, match="align.eps: expected a finite number > 0"):
            AlignConfig(eps=eps)
    with pytest.raises(ConfigError, match="the source features do not vary"):
        align(np.ones((5, 3)), np.random.default_rng(0).normal(size=(5, 3)), AlignConfig())
    with pytest.raises(ConfigError, match="same features in each domain"):
        align(np.zeros((5, 3)), np.zeros((5, 4)), AlignConfig())


def test_the_pseudo_arm_align_option_parses_is_checked_and_keeps_stage_keys_at_its_default():
    from shiftalign.experiment.arms.pseudo import PseudoOptions, run
    from shiftalign.experiment.config import ExperimentConfig, parse_arms, written_form
    from shiftalign.experiment.engine import arm_keys
    from shiftalign.experiment.rewards import RewardSpec, train_reward

    def arms(**opts):
        cfg = ExperimentConfig(arms=[{"name": "initial", "kind": "initial"}, {"name": "dpo_source", "kind": "dpo"},
                                     {"name": "p", "kind": "pseudo", **opts}], oracle_arm=None)
        return parse_arms(cfg)

    plain = arm_keys(arms())["p"]
    assert "align" not in written_form(PseudoOptions, {})
    assert arm_keys(arms(align=None))["p"] == plain  # the default written out: the same key
    assert arm_keys(arms(align={"method": "coral"}))["p"] != plain
    assert arm_keys(arms(align={"eps": 0.5}))["p"] != arm_keys(arms(align={"eps": 1.0}))["p"]
    opts = next(a for a in arms(align={"eps": 0.5}) if a.name == "p").options
    assert opts.align == AlignConfig("coral", 0.5)
    with pytest.raises(ConfigError, match="unknown alignment method 'pca'"):
        arms(align={"method": "pca"})
    with pytest.raises(ConfigError, match="eps"):
        arms(align={"eps": 0})
    with pytest.raises(ConfigError, match="unknown key.*rank"):
        arms(align={"rank": 3})
    with pytest.raises(ConfigError, match="align: a reward model on aligned features needs labeller: reward_model"):
        arms(labeller="gold", align={})
    with pytest.raises(ConfigError, match="refit_reward"):
        arms(align={}, refit_reward=True, reward_weights={"estimator": {"name": "classifier"}})
    # A fine-tuned reward model has no frozen features to align: refused before anything is trained.
    ctx = SimpleNamespace(cfg=ExperimentConfig(reward_model=RewardSpec(kind="finetune")), reward_model="rm")
    with pytest.raises(ConfigError, match=r"arms.p.align: aligned features need reward_model.kind: heads, got finetune"):
        run(ctx, "p", opts)
    with pytest.raises(ConfigError, match="align: aligned features need reward_model.kind: heads"):
        train_reward(ctx, None, align=AlignConfig(), target="s.jsonl")


def test_an_aligned_reward_model_of_a_pseudo_arm_reports_its_shift_cost(tmp_path, tiny_dir):
    from shiftalign.experiment.arms.pseudo import adapted_reward
    from shiftalign.experiment.config import ExperimentConfig
    from shiftalign.experiment.rewards import RewardSpec
    from shiftalign.models.features import FeatureConfig

    write_jsonl(tmp_path / "pairs.jsonl", pref_rows())
    write_jsonl(tmp_path / "samples.jsonl", [{"prompt": f"tell me {i // 2}", "prompt_id": str(i // 2), "completion": t}
                                             for i, t in enumerate(["What a lovely day!", "I hate this.", "Great job",
                                                                    "awful", "nice and kind", "terrible, sad"])])
    spec = RewardSpec(kind="heads", heads=2, l2=1.0, features=FeatureConfig(kind="hidden", model=str(tiny_dir)))
    ctx = SimpleNamespace(cfg=ExperimentConfig(reward_model=spec, wrap_text_as_chat=False), root=tmp_path,
                          data=SimpleNamespace(source_pairs=str(tmp_path / "pairs.jsonl"), heldout_pairs=None),
                          samples=str(tmp_path / "samples.jsonl"))
    path, diag = adapted_reward(ctx, "p", None, AlignConfig())
    heads = RewardHeads.load(path)
    assert heads.alignment is not None and heads.info["alignment"]["target"] == ctx.samples
    assert diag["kind"] == "heads, coral-aligned" and diag["on_policy_pairs"] > 0
    assert 0 <= diag["align_domain_auc_after"] <= 1 and diag["on_policy_accuracy"] is not None


def test_unaligned_heads_still_load_without_a_map(tmp_path):
    from shiftalign.models.features import FeatureConfig

    theta, scale, C = fit_heads(np.eye(12, 3) + 1, np.zeros((12, 3)), heads=1, l2=1.0)
    RewardHeads(theta, scale, FeatureConfig(), C, {"pairs": 12}).save(tmp_path)
    back = RewardHeads.load(tmp_path)
    assert back.alignment is None and back.info == {"pairs": 12}
    assert np.allclose(back.source_scores(np.ones((2, 3))), back.scores(np.ones((2, 3))))
