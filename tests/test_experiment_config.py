"""Arms are parsed once into typed options merged with the experiment's shared settings; stage keys read
the options as written."""

import pytest

from shiftalign.config import TrainConfig
from shiftalign.errors import ConfigError
from shiftalign.experiment.config import ExperimentConfig, parse_arms, rebase
from shiftalign.reweight.stabilize import StabiliserConfig


def _cfg(*arms, **top):
    return ExperimentConfig(arms=[{"name": "initial", "kind": "initial"}, {"name": "dpo_source", "kind": "dpo"},
                                  *arms], oracle_arm=None, **top)


def test_options_are_typed_and_start_from_the_shared_settings():
    cfg = _cfg({"name": "w", "kind": "dpo", "estimator": {"name": "kliep"}, "stabilise": {"temper": 0.5},
                "train": {"max_steps": 7}},
               {"name": "p", "kind": "pseudo", "reward_weights": {"estimator": {"name": "classifier"}}},
               dpo_train=TrainConfig(lr=3e-6, epochs=3), stabilise=StabiliserConfig(clip_quantile=0.9),
               pair_mode="prompt")
    arms = {a.name: a for a in parse_arms(cfg)}
    w = arms["w"].options
    assert isinstance(w.train, TrainConfig) and (w.train.lr, w.train.epochs, w.train.max_steps) == (3e-6, 3, 7)
    assert isinstance(w.stabilise, StabiliserConfig) and (w.stabilise.temper, w.stabilise.clip_quantile) == (0.5, 0.9)
    assert w.pair_mode == "prompt" and arms["w"].role == "method" and arms["dpo_source"].role == "control"
    p = arms["p"].options
    assert p.reward_weights.stabilise.clip_quantile == 0.9 and p.train.lr == 3e-6
    assert arms["w"].written == {"estimator": {"name": "kliep"}, "stabilise": {"temper": 0.5}, "train": {"max_steps": 7}}


def test_a_changed_shared_setting_reaches_every_arm_but_one_that_sets_its_own():
    cfg = _cfg({"name": "own", "kind": "pseudo", "train": {"lr": 1e-3}})
    arms = rebase(parse_arms(cfg), ExperimentConfig(**{**cfg.__dict__, "dpo_train": TrainConfig(lr=5e-6)}))
    lrs = {a.name: a.options.train.lr for a in arms if hasattr(a.options, "train")}
    assert lrs == {"dpo_source": 5e-6, "own": 1e-3}


def test_stage_keys_read_the_options_as_written_with_defaults_in_written_form():
    from shiftalign.experiment.arms.rl import RLOptions
    from shiftalign.experiment.config import written_form
    from shiftalign.experiment.engine import arm_keys

    a = parse_arms(_cfg({"name": "x", "kind": "dpo", "train": {"max_steps": 3}}))
    b = parse_arms(_cfg({"name": "x", "kind": "dpo", "train": {"max_steps": 3}}, dpo_train=TrainConfig(lr=1.0)))
    assert arm_keys(a)["x"] == arm_keys(b)["x"]  # the shared settings are the directory's, not the arm's key
    c = parse_arms(_cfg({"name": "x", "kind": "dpo", "train": {"max_steps": 4}}))
    assert arm_keys(a)["x"] != arm_keys(c)["x"]
    # An rl arm is keyed in the flat form its settings had before the rl recipe nested train:.
    written = {"rl": {"iterations": 2, "epochs_per_rollout": 1, "train": {"lr": 2e-6, "save_every": 4}}}
    assert written_form(RLOptions, written) == {"rl": {"iterations": 2, "epochs": 1, "lr": 2e-6, "save_every": 4},
                                                "reward_from": None}


def test_a_wrong_sub_config_key_names_the_arm_and_the_field():
    with pytest.raises(ConfigError, match=r"arms.x.train.lr"):
        parse_arms(_cfg({"name": "x", "kind": "dpo", "train": {"lr": "fast"}}))
    with pytest.raises(ConfigError, match=r"unknown key tempr in 'arms.x.stabilise'"):
        parse_arms(_cfg({"name": "x", "kind": "dpo", "stabilise": {"tempr": 1}}))
    with pytest.raises(ConfigError, match=r"arms.x.*train.epochs is not used by the rl recipe"):
        parse_arms(_cfg({"name": "x", "kind": "rl", "rl": {"train": {"epochs": 3}}}))
    with pytest.raises(ConfigError, match=r"lr_scale: expected a number > 0, got 0"):
        parse_arms(_cfg({"name": "x", "kind": "dpo", "lr_scale": 0}))


def test_a_pseudo_arms_labels_come_from_one_registry_of_sources_each_running_a_registered_labeller():
    from shiftalign.experiment.arms.pseudo import LABEL_SOURCES, PseudoOptions, label_settings
    from shiftalign.recipes.label import LABELLERS

    class Ctx:
        cfg = ExperimentConfig(gold={"name": "vader"}, seed=3)

    for name in LABEL_SOURCES.names():
        source = LABEL_SOURCES.get(name)
        assert source.labeller in LABELLERS.names()
        lc = label_settings(Ctx, "x", PseudoOptions(labeller=name), "rm")
        assert lc.labeller == source.labeller and PseudoOptions(labeller=name).role() == source.role
    assert label_settings(Ctx, "x", PseudoOptions(labeller="gold"), "rm").scorer.scorer == {"name": "vader"}
    assert label_settings(Ctx, "x", PseudoOptions(labeller="random"), "rm").scorer.scorer == {"name": "random", "seed": 3}
    oriented = label_settings(Ctx, "x", PseudoOptions(orient="gold"), "rm")
    assert oriented.labeller == "reward_model" and oriented.reward_model.orient == {"name": "vader"}
    assert PseudoOptions(orient="random").role() == "control" and PseudoOptions(orient="gold").role() == "oracle"


def test_the_experiments_dpo_loss_is_checked_before_anything_runs():
    from shiftalign.experiment.engine import validate_inputs

    cfg = _cfg(dpo_loss={"name": "dpo", "betta": 0.1}, baseline_arm="dpo_source")
    with pytest.raises(ConfigError, match="betta"):
        validate_inputs(cfg)
