"""shiftalign: aligning language models seen as domain adaptation.

The preference data a reward model or policy is trained on is the source domain; the responses of
the policy being aligned are the target domain. See the README for the architecture.

From Python (README, "From Python"): the commands as functions on the typed configs (``shiftalign.api``)
and density-ratio weights on plain arrays (``shiftalign.reweight.arrays``)::

    import shiftalign as sa

    fitted = sa.fit_weights("configs/weights.yaml", source=pairs, target=samples)
    result = sa.train_model("configs/dpo.yaml", data=pairs, weights=fitted)
    w = sa.density_ratio(Xs, Xt, estimator="ulsif")

:data:`__all__` is the public surface; every other module is internal. The names load on first use, so
``import shiftalign`` (and the command line's ``--help``) stays fast.
"""

__version__ = "0.1.0"

# name -> the module that defines it (relative to this package)
_PUBLIC = {
    # the commands (shiftalign.api; `train` and `experiment` name subpackages, hence train_model, run_experiment)
    **dict.fromkeys(["train_model", "fit_weights", "fit_heads", "sample", "label", "iterate", "evaluate",
                     "run_experiment", "resolve_config"], ".api"),
    # their configs and results
    "RunConfig": ".config", "ModelConfig": ".config", "DataConfig": ".config", "TrainConfig": ".config",
    "RLConfig": ".train.rl_config", "WeightsConfig": ".recipes.weights", "FittedWeights": ".recipes.weights",
    "RewardHeadsConfig": ".recipes.reward_heads", "SampleConfig": ".rollout.sample", "LabelConfig": ".recipes.label",
    "IterateConfig": ".recipes.iterate", "EvaluateConfig": ".recipes.evaluate",
    "ExperimentConfig": ".experiment.engine", "TrainResult": ".recipes.common",
    # density-ratio weights on arrays
    "DensityRatio": ".reweight.arrays", "density_ratio": ".reweight.arrays",
    # reading and validating data, errors
    "load_examples": ".data.load", "ShiftalignError": ".errors", "ConfigError": ".errors", "DataError": ".errors",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'shiftalign' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_PUBLIC[name], __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
