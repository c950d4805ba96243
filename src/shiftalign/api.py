"""shiftalign from Python: every command of the CLI as a function, on the same typed configs.

Each function takes a config — a config dataclass, a mapping of its fields, or a YAML file path (with
``extends:``), or nothing (the defaults) — and keyword overrides on top of it: ``output_dir="runs/x"``,
``loss={"beta": 0.2}`` (a mapping merges into the section, as ``extends:`` merges files) or
``**{"train.lr": 1e-6}`` (a dotted key, as on the command line). Data arguments take a file path, a
Hugging Face dataset name or ``save_to_disk`` directory, or rows in memory: a ``datasets.Dataset``, a
pandas ``DataFrame`` or a list of row dicts (written once to a content-keyed JSONL file under
``$SHIFTALIGN_CACHE/inputs``; a bad row's error names the argument and the row). Config and data are
validated before any model is loaded or any output written; errors are :class:`ShiftalignError`
(:class:`ConfigError`, :class:`DataError` with the file, line and field). ``restart=True`` is the
CLI's ``--restart``. Each function returns what its command's ``main`` returns::

    import shiftalign as sa

    fitted = sa.fit_weights("configs/weights.yaml", source=pairs_df, target="runs/samples/samples.jsonl")
    result = sa.train_model("configs/dpo.yaml", data=pairs_df, weights=fitted, output_dir="runs/dpo_w")

The public names are listed in ``shiftalign.__all__``; everything else is internal. ``train`` and
``experiment`` are the names of subpackages, so their commands are ``train_model`` and ``run_experiment``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import os
from pathlib import Path

from .config import from_dict, read_tree, to_dict
from .errors import ConfigError, DataError
from .experiment.engine import ExperimentConfig
from .experiment.engine import main as _experiment_main
from .recipes import RECIPES, check_method_sections
from .recipes.common import TrainResult
from .recipes.evaluate import EvaluateConfig
from .recipes.evaluate import main as _evaluate_main
from .recipes.iterate import IterateConfig
from .recipes.iterate import main as _iterate_main
from .recipes.label import LabelConfig
from .recipes.label import main as _label_main
from .recipes.reward_heads import RewardHeadsConfig
from .recipes.reward_heads import main as _heads_main
from .recipes.weights import FittedWeights, WeightsConfig
from .recipes.weights import main as _weights_main
from .rollout.sample import SampleConfig
from .rollout.sample import main as _sample_main
from .rundir import restart_allowed


# -- configs ------------------------------------------------------------------------------------
def _merge(base: dict, extra: dict) -> dict:
    for key, value in extra.items():
        head, _, rest = key.partition(".")
        if rest:
            value, key = {rest: value}, head
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = to_dict(value)
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def _tree(config) -> dict:
    if config is None:
        return {}
    if isinstance(config, (str, os.PathLike)):
        return read_tree(config)
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return to_dict(config)
    if isinstance(config, dict):
        return _merge({}, config)
    raise ConfigError(f"a config is a dataclass, a mapping or a YAML file path, got {type(config).__name__}")


def resolve_config(command: str, config=None, **overrides):
    """The typed config ``command`` would run on (``"train"``, ``"weights fit"``, ``"heads fit"``, ``"sample"``,
    ``"label"``, ``"iterate"``, ``"evaluate"``, ``"experiment"``): ``config`` (dataclass, mapping, YAML path or
    None) with ``overrides`` merged in, every key and value checked as the CLI checks them; nothing runs."""
    if command != "train" and command not in COMMANDS:
        raise ConfigError(f"unknown command {command!r}; known: train, {', '.join(COMMANDS)}")
    tree = _merge(_tree(config), overrides)
    where = f"{config}: " if isinstance(config, (str, os.PathLike)) else ""
    try:
        if command == "train":
            cfg = from_dict(RECIPES.get(str(tree.get("recipe", "preference"))).config, tree)
            check_method_sections(cfg)
            return cfg
        cfg = from_dict(COMMANDS[command][0], tree)
        if command == "experiment":
            from .experiment.config import parse_arms

            parse_arms(cfg)
        return cfg
    except ConfigError as e:
        raise ConfigError(f"{where}{e}") from None


# -- data in memory -----------------------------------------------------------------------------
def _rows(data) -> list[dict] | None:
    """Rows of an in-memory table, or None for a path or dataset name."""
    if isinstance(data, (str, os.PathLike)):
        return None
    if hasattr(data, "to_dict") and hasattr(data, "columns"):  # a pandas DataFrame
        return data.to_dict(orient="records")
    if hasattr(data, "column_names") and hasattr(data, "features"):  # a datasets.Dataset
        return list(data)
    if isinstance(data, (list, tuple)) and all(isinstance(r, dict) for r in data):
        return list(data)
    raise ConfigError(f"data is a path, a dataset name, a datasets.Dataset, a pandas DataFrame or a list of row dicts, "
                      f"got {type(data).__name__}")


def _plain(value):
    if isinstance(value, float) and math.isnan(value):
        return None  # a DataFrame's missing cell
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return _plain(value.tolist())
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _as_file(rows: list[dict]) -> str:
    from .io import write_text_atomic
    from .models.packaged import cache_root

    text = "".join(json.dumps(_plain(r), ensure_ascii=False) + "\n" for r in rows)
    path = cache_root() / "inputs" / f"{hashlib.sha256(text.encode()).hexdigest()[:20]}.jsonl"
    if not path.is_file():
        write_text_atomic(path, text)
    return str(path)


def _weights_rows(weights) -> list[dict] | None:
    if isinstance(weights, FittedWeights):
        return None
    if isinstance(weights, dict):  # id -> weight
        return [{"id": str(k), "weight": float(v)} for k, v in weights.items()]
    return _rows(weights)


def _data(given: dict, named: dict[str, str]) -> dict:
    """``given``: config key -> (argument name, value). Dotted config keys for the data arguments that were
    given; in-memory rows written to files (file -> argument name recorded in ``named`` for errors)."""
    out = {}
    for key, (arg, value) in given.items():
        if value is None:
            continue
        if isinstance(value, FittedWeights):
            value = value.file
        rows = _weights_rows(value) if key.endswith("weights") else _rows(value)
        if rows is not None:
            value = _as_file(rows)
            named[value] = arg
        out[key] = str(value)
    return out


@contextlib.contextmanager
def _naming(named: dict[str, str]):
    """A data error in a file written from rows in memory names the argument and the row, not the file."""
    try:
        yield
    except DataError as e:
        if e.source not in named:
            raise
        raise DataError(f"{named[e.source]} (rows given in memory)", e.line, e.field, e.expected, unit="row") from None


def _run(command: str, config, data: dict, overrides: dict, restart: bool = False):
    named: dict[str, str] = {}
    with _naming(named):
        cfg = resolve_config(command, config, **_data(data, named), **overrides)
        main = RECIPES.get(cfg.recipe).main if command == "train" else COMMANDS[command][1]
        with restart_allowed(restart):
            return main(cfg)


# -- the commands -------------------------------------------------------------------------------
def train_model(config=None, *, data=None, eval_data=None, weights=None, restart: bool = False, **overrides) -> TrainResult:
    """``shiftalign train``: train with the recipe the config names (``sft``, ``reward``, ``preference`` —
    DPO, IPO, cDPO, robust DPO, SimPO, SLiC, KTO, as in ``losses/`` — or ``rl``: PPO, RLOO, GRPO).

    Inputs: ``config`` (:class:`RunConfig` or, for ``recipe: rl``, ``RLConfig``; a mapping; a YAML path);
    ``data`` / ``eval_data``: the training / evaluation rows (``data.train`` / ``data.eval``; RL: ``data`` is
    ``prompts``); ``weights``: a weights file, a :class:`FittedWeights`, or a mapping id -> weight
    (``data.weights``, joined on id; RL: ``prompt_weights``).
    Output: :class:`TrainResult` (the final model's directory, steps, last training and evaluation records)."""
    if _merge(_tree(config), overrides).get("recipe") == "rl":  # RL reads prompts, weighted by prompt id
        keys = {"data": "prompts", "weights": "prompt_weights", "eval_data": "data.eval"}
    else:
        keys = {"data": "data.train", "weights": "data.weights", "eval_data": "data.eval"}
    given = {keys[a]: (a, v) for a, v in (("data", data), ("weights", weights), ("eval_data", eval_data))}
    return _run("train", config, given, overrides, restart)


def fit_weights(config=None, *, source=None, target=None, restart: bool = False, **overrides) -> FittedWeights:
    """``shiftalign weights fit``: density-ratio weights p_target / p_source of source preference pairs toward
    target rows (classifier, uLSIF / RuLSIF, KLIEP, KMM on embedding, hidden-state or log-prob features),
    stabilised, with diagnostics (ESS/N, largest share, domain AUC before and after).

    Inputs: ``config`` (:class:`WeightsConfig`, mapping or YAML path); ``source``: pairs (prompt, chosen,
    rejected); ``target``: rows with prompt + completion (policy samples), or prompts with ``pair_mode="prompt"``.
    Output: :class:`FittedWeights` (the ``weights.jsonl`` file, the diagnostics); pass it to :func:`train_model`."""
    return _run("weights fit", config, {"source": ("source", source), "target": ("target", target)}, overrides, restart)


def fit_heads(config=None, *, pairs=None, weights=None, held_out=None, restart: bool = False, **overrides) -> dict:
    """``shiftalign heads fit``: an ensemble of Bradley-Terry reward heads on frozen features, optionally
    importance-weighted (Sugiyama et al., 2007, importance-weighted empirical risk).

    Inputs: ``config`` (:class:`RewardHeadsConfig`, mapping or YAML path); ``pairs``: preference pairs;
    ``weights``: importance weights by pair id (file, :class:`FittedWeights` or mapping); ``held_out``: pairs
    to report accuracy on. Output: the heads' info (pairs, accuracies); ``output_dir`` is a reward model for
    :func:`label`."""
    return _run("heads fit", config, {"pairs": ("pairs", pairs), "weights": ("weights", weights), "held_out": ("held_out", held_out)}, overrides, restart)


def sample(config=None, *, prompts=None, **overrides) -> Path:
    """``shiftalign sample``: ``sampling.n`` responses per prompt from a policy, resumable.

    Inputs: ``config`` (:class:`SampleConfig`, mapping or YAML path); ``prompts``: prompt rows.
    Output: the samples' JSONL file (prompt, completion, token ids, log-prob, ``sample_key``)."""
    return _run("sample", config, {"prompts": ("prompts", prompts)}, overrides)


def label(config=None, *, samples=None, restart: bool = False, **overrides) -> dict:
    """``shiftalign label``: preference labels for pairs of samples of a prompt, by a reward model (or an
    ensemble), an LLM judge (both orders) or any scorer; pairs that got no label are kept with their reason.

    Inputs: ``config`` (:class:`LabelConfig`, mapping or YAML path); ``samples``: rows with prompt + completion.
    Output: the summary (pairs, unlabelled, reasons); ``output_dir/pseudo_pairs.jsonl`` trains with
    :func:`train_model`."""
    return _run("label", config, {"samples": ("samples", samples)}, overrides, restart)


def iterate(config=None, *, prompts=None, mix_source=None, restart: bool = False, **overrides) -> list[dict]:
    """``shiftalign iterate``: rounds of sample -> label -> train (iterative DPO, Xiong et al., 2024; with
    ``reference="previous"`` as in Yuan et al., 2024, "Self-Rewarding Language Models").

    Inputs: ``config`` (:class:`IterateConfig`, mapping or YAML path); ``prompts``: target prompts;
    ``mix_source``: source pairs added to every round. Output: one record per round (model, samples, labels)."""
    return _run("iterate", config, {"prompts": ("prompts", prompts), "mix_source": ("mix_source", mix_source)}, overrides, restart)


def evaluate(config=None, *, prompts=None, **overrides) -> dict:
    """``shiftalign evaluate``: gold reward (paired-bootstrap interval over prompts; Efron & Tibshirani, 1993),
    win rate and KL to the baseline of each policy on held-out prompts.

    Inputs: ``config`` (:class:`EvaluateConfig`, mapping or YAML path); ``prompts``: held-out prompts.
    Output: the contents of ``evaluation.json`` (one entry per policy)."""
    return _run("evaluate", config, {"prompts": ("prompts", prompts)}, overrides)


def run_experiment(config=None, *, restart: bool = False, **overrides) -> dict:
    """``shiftalign experiment``: compare arms (source-only, weighted, pseudo-labelled, RL, oracle) on a target
    domain, with cached stages, intervals over prompts and seeds, and the verdict.

    Inputs: ``config`` (:class:`ExperimentConfig`, mapping or YAML path). Output: the results (also
    ``results.json``, ``results.md`` and ``report.html`` in ``output_dir``)."""
    return _run("experiment", config, {}, overrides, restart)


# command -> (config class, its main), as cli.COMMANDS names them
COMMANDS = {"weights fit": (WeightsConfig, _weights_main), "heads fit": (RewardHeadsConfig, _heads_main),
            "sample": (SampleConfig, _sample_main), "label": (LabelConfig, _label_main),
            "iterate": (IterateConfig, _iterate_main), "evaluate": (EvaluateConfig, _evaluate_main),
            "experiment": (ExperimentConfig, _experiment_main)}
