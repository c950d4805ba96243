"""A diverse reward-heads ensemble (models.diverse_heads): heads split over several feature sets, the hidden
layers of one model from one backbone pass, one score row per head through every consumer of a heads directory;
the feature sets resolved and checked; the experiment's and the pseudo arm's options."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from shiftalign.cli import main
from shiftalign.errors import ConfigError
from shiftalign.labeling.gold_check import round_label_check
from shiftalign.models.diverse_heads import DiverseHeads, extract_sets, member_sets, split_heads
from shiftalign.models.features import FeatureConfig, extract
from shiftalign.models.reward_heads import RewardHeads, fit_heads, is_heads_dir

from conftest import pref_rows, write_jsonl
from fake_llm_server import FakeLLM
from helpers import run_experiment_config

TEXTS = [("Say something.", t) for t in ["Good!", "Bad.", "Fine, thanks", "no"]]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A 4-layer tiny causal LM (middle layers 1 and 3 stop the pass below the top) and a tiny encoder."""
    from shiftalign.models.tiny import save_tiny_encoder, tiny_causal_lm

    root = tmp_path_factory.mktemp("diverse")
    model, tok = tiny_causal_lm(0, num_hidden_layers=4)
    model.save_pretrained(root / "lm")
    tok.save_pretrained(root / "lm")
    return str(root / "lm"), save_tiny_encoder(root / "enc")


def _members(models):
    lm, enc = models
    return [{"kind": "hidden", "model": lm, "layer": 1, "batch_size": 64},
            {"kind": "hidden", "model": lm, "layer": 3, "batch_size": 64},
            {"kind": "embedding", "model": enc}]


def _fit(tmp_path, members, name="heads", **over):
    write_jsonl(tmp_path / "pairs.jsonl", pref_rows())
    cfg = {"pairs": str(tmp_path / "pairs.jsonl"), "output_dir": str(tmp_path / name), "heads": 5, "l2": 1.0,
           "features": members[0], "members": members, **over}
    (tmp_path / f"{name}.yaml").write_text(json.dumps(cfg))
    assert main(["heads", "fit", str(tmp_path / f"{name}.yaml")]) == 0
    return tmp_path / name


def _count_backbone_passes(monkeypatch):
    """Every forward of the causal LM's body (a backbone pass), counted, with the layers it was asked for."""
    import shiftalign.models.features as features

    passes, real_load, real_states = [], features._load_lm, features.hidden_states

    def counting_load(cfg):
        tok, model, device = real_load(cfg)
        model.model.register_forward_pre_hook(lambda *_: passes.append(None))
        return tok, model, device

    def asked(model, ids, mask, layers):
        passes.append(list(layers))
        return real_states(model, ids, mask, layers)

    monkeypatch.setattr(features, "_load_lm", counting_load)
    monkeypatch.setattr(features, "hidden_states", asked)
    return passes


def test_one_backbone_pass_serves_every_hidden_layer_member_in_the_fit_and_in_scoring(tmp_path, models, monkeypatch):
    passes = _count_backbone_passes(monkeypatch)
    out = _fit(tmp_path, _members(models))
    assert passes == [[1, 3], None]  # 32 training texts, one batch: one body forward for both layers
    heads = RewardHeads.load(out)
    passes.clear()
    heads.score_texts(TEXTS, None)  # no cache: the texts' features computed now
    assert passes == [[1, 3], None]
    passes.clear()
    extract_sets(TEXTS, heads.features, tmp_path / "cache")
    extract_sets(TEXTS, heads.features, tmp_path / "cache")  # both layers cached by the first call
    assert passes == [[1, 3], None]


def test_members_score_on_their_own_features_and_the_directory_reloads_to_the_same_scores(tmp_path, models):
    from shiftalign.data.load import load_examples
    from shiftalign.labeling.reward_model import RewardLabelConfig, ensemble_size, score_lists
    from shiftalign.rl.scorers import make_scorer

    out = _fit(tmp_path, _members(models), held_out=str(tmp_path / "pairs.jsonl"))
    heads = RewardHeads.load(out)
    assert is_heads_dir(out) and isinstance(heads, DiverseHeads) and heads.size == 5
    assert [m.size for m in heads.members] == [2, 2, 1]  # 5 heads over 3 sets, the first ones one more
    assert [m.theta.shape[1] for m in heads.members] == [32, 32, 32] and heads.members[0].features.layer == 1
    info = json.loads((out / "reward_heads.json").read_text())
    assert [m["heads"] for m in info["members"]] == [2, 2, 1] and info["heads"] == 5
    assert len(info["train_accuracy_by_member"]) == 3 and 0 <= info["held_out_accuracy"] <= 1
    scores = heads.score_texts(TEXTS, None)
    assert scores.shape == (5, len(TEXTS))
    # each set's heads score on that set's own features, the sets' rows in the order listed
    by_hand = np.concatenate([m.theta @ (extract(TEXTS, m.features, None) / m.scale).T for m in heads.members])
    np.testing.assert_allclose(scores, by_hand, rtol=1e-6, atol=1e-9)
    rows = [scores[0:2], scores[2:4], scores[4:5]]
    for a in range(3):
        for b in range(a + 1, 3):
            assert not np.allclose(rows[a].mean(0), rows[b].mean(0))  # different features, different scores
    heads.save(tmp_path / "copy")
    np.testing.assert_array_equal(RewardHeads.load(tmp_path / "copy").score_texts(TEXTS, None), scores)
    np.testing.assert_array_equal(RewardHeads.load(out).score_texts(TEXTS, tmp_path / "c"), scores)
    # the labeller, the bound's member count and the RL scorer read one row per head
    write_jsonl(tmp_path / "s.jsonl", [{"id": f"s{i}", "prompt": p, "completion": t} for i, (p, t) in enumerate(TEXTS)])
    lists = score_lists(str(out), load_examples(str(tmp_path / "s.jsonl"), "sft"), RewardLabelConfig(models=[str(out)]))
    np.testing.assert_allclose(lists, scores, rtol=1e-6)
    assert ensemble_size(str(out)) == 5
    worst = make_scorer({"name": "reward_model", "path": str(out), "bound": "worst"})
    np.testing.assert_allclose(worst([p for p, _ in TEXTS], [t for _, t in TEXTS]), scores.min(0), rtol=1e-6)


def test_every_head_of_a_member_is_a_bootstrap_resample_even_alone():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(60, 3)), rng.normal(size=(60, 3))
    alone = fit_heads(X + 0.5, Y, heads=1, l2=1.0)[0]
    resampled = fit_heads(X + 0.5, Y, heads=1, l2=1.0, resample=True)[0]
    assert np.array_equal(alone, fit_heads(X + 0.5, Y, heads=1, l2=1.0, resample=None)[0])  # as before
    assert not np.allclose(alone, resampled)


def test_feature_sets_are_resolved_and_checked():
    hidden = FeatureConfig(kind="hidden", model="m", layer=[9, 18])
    sets = member_sets(hidden, None, True)
    assert [(f.kind, f.layer) for f in sets] == [("hidden", 9), ("hidden", 18), ("embedding", -1)]
    assert sets[0].model == "m" and sets[2].model == "default"
    assert [f.layer for f in member_sets(FeatureConfig(kind="hidden", layer=12), None, True)] == [12, -1]
    assert member_sets(hidden, None, False) is None  # one feature set: the bootstrap heads as before
    assert split_heads(8, 3) == [3, 3, 2] and split_heads(3, 3) == [1, 1, 1]
    with pytest.raises(ConfigError, match="3 heads cannot be split over 4 feature sets"):
        split_heads(3, 4)
    with pytest.raises(ConfigError, match="not both"):
        member_sets(hidden, [FeatureConfig()], True)
    with pytest.raises(ConfigError, match="kind with layers"):
        member_sets(FeatureConfig(kind="embedding"), None, True)
    with pytest.raises(ConfigError, match="two or more different feature sets"):
        member_sets(hidden, [FeatureConfig(), FeatureConfig()], False)
    with pytest.raises(ConfigError, match="two or more different feature sets"):
        member_sets(hidden, [FeatureConfig()], False)
    with pytest.raises(ConfigError, match=r"members\[1\].layer: a member is one feature set"):
        member_sets(hidden, [FeatureConfig(), FeatureConfig(kind="hidden", layer=[1, 2])], False)
    from shiftalign.recipes.reward_heads import RewardHeadsConfig

    with pytest.raises(ConfigError, match="cannot be split"):
        RewardHeadsConfig(features=hidden, diverse=True, heads=2)
    with pytest.raises(ConfigError, match="align maps one feature set"):
        RewardHeadsConfig(features=hidden, diverse=True, align={"method": "coral"}, align_target="t.jsonl")


def test_the_experiment_and_the_pseudo_arm_take_feature_sets_and_keep_stage_keys_at_their_defaults():
    from shiftalign.experiment.arms.pseudo import PseudoOptions, refit_settings, run
    from shiftalign.experiment.config import ExperimentConfig, parse_arms, written_form
    from shiftalign.experiment.engine import arm_keys
    from shiftalign.experiment.rewards import RewardSpec, heads_members

    def arms(**opts):
        cfg = ExperimentConfig(arms=[{"name": "initial", "kind": "initial"}, {"name": "dpo_source", "kind": "dpo"},
                                     {"name": "p", "kind": "pseudo", **opts}], oracle_arm=None)
        return parse_arms(cfg)

    plain = arm_keys(arms())["p"]
    assert not {"reward_members", "reward_diverse"} & set(written_form(PseudoOptions, {}))
    assert arm_keys(arms(reward_members=None, reward_diverse=False))["p"] == plain
    assert arm_keys(arms(reward_diverse=True))["p"] != plain
    two = [{"kind": "hidden", "layer": 3}, {"kind": "embedding"}]
    opts = next(a for a in arms(reward_members=two) if a.name == "p").options
    assert [f.kind for f in opts.reward_members] == ["hidden", "embedding"] and opts.diverse()
    for bad, match in (({"labeller": "gold", "reward_diverse": True}, "need labeller: reward_model"),
                       ({"reward_diverse": True, "reward_members": two}, "not both"),
                       ({"reward_diverse": True, "align": {}}, "no align")):
        with pytest.raises(ConfigError, match=match):
            arms(**bad)
    # the experiment's own reward model: its heads split over feature sets, for a kind that has features only
    spec = RewardSpec(kind="heads", heads=4, features=FeatureConfig(kind="hidden", layer=[1, 2]), diverse=True)
    assert heads_members(spec) == {"members": None, "diverse": True}
    assert heads_members(spec, ["sets"]) == {"members": ["sets"]}  # an arm's own sets win
    with pytest.raises(ConfigError, match="reward_model.members: members on several feature sets need reward_model."
                                          "kind: heads, got finetune"):
        RewardSpec(kind="finetune", diverse=True)
    with pytest.raises(ConfigError, match="cannot be split"):
        RewardSpec(kind="heads", heads=2, features=FeatureConfig(kind="hidden", layer=[1, 2]), diverse=True)
    ctx = SimpleNamespace(cfg=ExperimentConfig(reward_model=RewardSpec(kind="finetune")), reward_model="rm")
    with pytest.raises(ConfigError, match="arms.p.reward_members: members on several feature sets need"):
        run(ctx, "p", opts)
    ctx = SimpleNamespace(cfg=ExperimentConfig(reward_model=spec), data=SimpleNamespace(source_pairs="s.jsonl"))
    refit = refit_settings(ctx, "p", SimpleNamespace(estimator={"name": "classifier"}, stabilise=None),
                           member_sets(spec.features, None, True))
    assert [f.layer for f in refit.heads.members] == [1, 2, -1]  # the per-round refit keeps the arm's sets


def test_a_pseudo_arm_with_diverse_heads_reports_the_spread_auroc_of_each_round(bench_cfg, tmp_path, monkeypatch,
                                                                                tiny_dir):
    enc = bench_cfg["features"]
    cfg = {**bench_cfg, "oracle_arm": None, "reward_model": {"kind": "heads", "heads": 4, "l2": 1.0, "features": enc},
           "arms": [{"name": "initial", "kind": "initial"}, {"name": "dpo_source", "kind": "dpo"},
                    {"name": "div", "kind": "pseudo", "pairs": "all", "reward_members": [
                        {"kind": "hidden", "model": tiny_dir, "layer": 1}, {"kind": "hidden", "model": tiny_dir,
                                                                              "layer": 2}, enc]}]}
    with FakeLLM() as server:
        assert run_experiment_config(cfg, tmp_path, monkeypatch, server) == 0
    root = tmp_path / "bench"
    heads = RewardHeads.load(root / "rewards" / "div")
    assert isinstance(heads, DiverseHeads) and [m.size for m in heads.members] == [2, 1, 1]
    assert not isinstance(RewardHeads.load(root / "reward"), DiverseHeads)  # the shared one: bootstrap heads
    [r1] = json.loads((root / "stages" / "arm_div.json").read_text())["diagnostics"]["rounds"]
    check = round_label_check(root / "div" / "round-1" / "labels" / "pseudo_pairs.jsonl", cfg["gold"], 0)
    assert check["spread_auroc_pairs"] and 0 < check["spread_auroc_wrong"] < check["spread_auroc_pairs"]
    assert {k: r1[k] for k in check} == check  # the round's AUROC is that of its pairs against gold
    lo, hi = r1["spread_auroc_ci95"]
    assert 0 <= lo <= r1["spread_auroc"] <= hi <= 1
    res = json.loads((root / "results.json").read_text())
    row = next(r for r in res["arms"] if r["arm"] == "div")
    assert row["spread_auroc_by_round"] == [r1["spread_auroc"]] and row["spread_auroc_ci95_by_round"] == [[lo, hi]]
    assert "spread flags a wrong label with AUROC" in (root / "results.md").read_text()
    assert "diverse over 3 feature sets" in res["reward_models"]["div"]["kind"]
