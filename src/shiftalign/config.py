"""Typed run configuration: dataclasses with defaults and comments, read from YAML, with dotted
``key=value`` overrides from the command line. Unknown keys are errors. A file may start from another with
``extends: base.yaml`` and write only what differs (:func:`read_tree`).

A method's own knobs live with the method: ``loss:`` holds ``name`` plus the parameters of that
loss's own dataclass (see ``losses/``).

    cfg = load_config("configs/dpo.yaml", ["train.lr=1e-6", "loss.beta=0.2"])
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import ConfigError


@dataclass
class LoraConfig:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: str | list[str] = "all-linear"  # peft's names, or "all-linear"


@dataclass
class ModelConfig:
    path: str = "default"  # HF path or hub name; "default" = the packaged SmolLM2-135M-Instruct
    dtype: str = "auto"  # auto: fp32 on a CPU, bf16 autocast on a GPU that supports it; or float32 / bfloat16
    trust_remote_code: bool = False
    lora: LoraConfig | None = None  # set to train a LoRA adapter; the reference is then the base model
    gradient_checkpointing: bool = False
    attn_implementation: str = "sdpa"


@dataclass
class DataConfig:
    train: str = ""  # file (.jsonl .json .parquet .csv) or HF dataset name / local directory
    eval: str | None = None
    split: str = "train"  # split for HF datasets
    eval_split: str = "test"
    max_length: int = 512  # prompt + one response, in tokens
    max_prompt_length: int = 256
    truncation: str = "truncate"  # truncate (see data.tokenize) | skip
    wrap_text_as_chat: bool = False  # plain-text prompts become a user turn of the chat template
    weights: str | None = None  # weights file (id -> weight), joined on id
    missing_weight: str = "error"  # error | one | drop, for ids absent from the weights file


@dataclass
class TrainConfig:
    batch_size: int = 8  # examples per optimiser step, over all processes
    micro_batch_size: int = 4  # examples per forward pass per process
    epochs: int = 1
    max_steps: int = -1  # > 0 stops after this many optimiser steps
    lr: float = 5e-7
    weight_decay: float = 0.0
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    schedule: str = "cosine"  # cosine | linear | constant (all after warm-up)
    warmup_steps: int = 0
    max_grad_norm: float = 1.0  # 0 disables clipping
    log_every: int = 1
    eval_every: int = 0  # 0: evaluate only at the end (when data.eval is set)
    save_every: int = 0  # 0: checkpoint only at the end
    keep_checkpoints: int = 2
    # false: a finished run keeps its final model only and drops its checkpoints (optimiser state, ~3x the
    # model's size); true: the last checkpoint stays too, e.g. to continue training later
    keep_optimizer_state: bool = False
    resume: bool = True  # continue from the latest checkpoint in output_dir when there is one
    report_to: list[str] = field(default_factory=list)  # tensorboard, wandb
    reference_batch_size: int = 16  # rows per forward when pre-computing reference log-probs
    progress: bool = True
    # Fractions of the run's optimiser steps (each in (0, 1)) at which the model is saved, weights only, to
    # output_dir/snapshots/step-N: the points of a gold-against-KL frontier (experiment.frontier). [] : none.
    snapshots: list[float] = field(default_factory=list)
    # Data parallelism over several processes: none (every process holds the whole model; DDP) | fsdp (parameters,
    # gradients and optimiser state sharded over the processes; module train/sharding.py). DeepSpeed is not supported.
    sharding: str = "none"


@dataclass
class PolicyRatioConfig:
    # A section of the run config read by the training loop; the weights are computed by reweight.policy_ratio,
    # which imports this class (config sits below every method module, never the other way round).
    form: str = "wpo"  # wpo | relative
    alpha: float = 0.5  # relative form: mixing weight a in (0, 1]


@dataclass
class RunConfig:
    recipe: str = "preference"  # sft | reward | preference
    output_dir: str = "runs/default"
    seed: int = 0
    cache_dir: str | None = None  # reference log-prob cache; default: $SHIFTALIGN_CACHE/reference
    reference: str | None = None  # reference model path; default: the policy's starting weights (model.path)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: dict = field(default_factory=lambda: {"name": "dpo"})  # name + that loss's parameters
    # Per-step weights from the policy-likelihood ratio (see reweight.policy_ratio); null: off.
    policy_ratio: PolicyRatioConfig | None = None
    # A directory of finished runs keyed on their content (recipes.reuse): a run with the same settings, data and
    # models as one recorded there links that run's model instead of training; null: always train.
    reuse: str | None = None


def _hints(cls):
    return typing.get_type_hints(cls)


def _coerce(value, tp, key: str):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return from_dict(tp, value, key)
    if tp is typing.Any:
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        inner = args[0] if args else typing.Any
        items = [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is str and not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if tp in (int, float, str, bool) and not isinstance(value, tp):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}")
    return value


def coerce(value, tp, key: str):
    """``value`` read as type ``tp`` (as a config field of that type reads it); ConfigError naming ``key``."""
    return _coerce(value, tp, key)


def from_dict(cls, data: dict, prefix: str = ""):
    """Build dataclass ``cls`` from a mapping; unknown keys and wrong types raise ConfigError."""
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        where = f" in '{prefix}'" if prefix else ""
        moved = getattr(cls, "MOVED", {})  # a class may name where its former keys went
        hint = "; ".join(f"{k} is now {moved[k]}" for k in unknown if k in moved)
        raise ConfigError(f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}{where}; "
                          + (f"{hint}; " if hint else "") + f"known: {', '.join(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in data.items()}
    return cls(**kwargs)


def to_dict(obj):
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj


def _set_dotted(tree: dict, dotted: str, value) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        if node.get(p) is None:
            node[p] = {}
        if not isinstance(node[p], dict):
            raise ConfigError(f"override {dotted}: '{p}' is not a section")
        node = node[p]
    node[parts[-1]] = value


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return tree


def read_tree(path: str | Path) -> dict:
    """The mapping a YAML config file holds, with the file it ``extends`` (and that file's own base, and so on)
    merged under it; ``extends`` itself is removed.

    ``extends: base.yaml`` names a file relative to the one that says it. The file's keys override the base's:
    mappings merge key by key, at every depth; any other value, a list included, replaces the base's whole.
    One exception: the top-level ``arms`` list merges by ``name`` — an arm named like one of the base's merges
    into it (its mapping deep-merged) and keeps the base's position, a new name is appended, and
    ``{name: x, drop: true}`` removes the base's arm ``x``. Nothing is checked against a dataclass here:
    :func:`load_config` parses the merged mapping, so an unknown key is an error wherever it was written.
    """
    return _resolve(Path(path), ())


def _resolve(path: Path, chain: tuple[Path, ...]) -> dict:
    seen = [p.resolve() for p in chain]
    if path.resolve() in seen:
        cycle = " -> ".join(str(p) for p in (*chain[seen.index(path.resolve()):], path))
        raise ConfigError(f"config files extend each other in a cycle: {cycle}")
    tree = _read_yaml(path)
    base = tree.pop("extends", None)
    if base is None:
        for arm in tree.get("arms") or []:
            if isinstance(arm, dict) and "drop" in arm:
                raise ConfigError(f"{path}: arms.{arm.get('name')}.drop: only a config that extends another can "
                                  "drop one of its arms")
        return tree
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"{path}: extends: expected the name of a YAML file, got {base!r}")
    base_path = path.parent / base
    if not base_path.is_file():
        raise ConfigError(f"{path}: extends {base}: {base_path} not found")
    return _merge(_resolve(base_path, (*chain, path)), tree, path, base_path, top=True)


def _merge(base: dict, over: dict, path: Path, base_path: Path, top: bool = False) -> dict:
    """``over`` (read from ``path``) merged onto ``base`` (``base_path`` resolved): see :func:`read_tree`."""
    merged = dict(base)
    for key, value in over.items():
        if top and key == "arms" and isinstance(value, list):
            merged[key] = _merge_arms(base[key] if isinstance(base.get(key), list) else [], value, path, base_path)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            merged[key] = _merge(base[key], value, path, base_path)
        else:
            merged[key] = value
    return merged


def _merge_arms(base: list, over: list, path: Path, base_path: Path) -> list:
    """The base's arms with ``over``'s merged in by name (see :func:`read_tree`)."""
    arms = list(base)
    index = {arm.get("name"): i for i, arm in enumerate(arms) if isinstance(arm, dict)}
    seen = set()
    for i, arm in enumerate(over):
        if not isinstance(arm, dict) or not arm.get("name"):
            raise ConfigError(f"{path}: arms[{i}]: expected a mapping with a name, got {arm!r}")
        name = arm["name"]
        if name in seen:
            raise ConfigError(f"{path}: arms: {name} is listed twice")
        seen.add(name)
        if "drop" in arm:
            if arm["drop"] is not True or set(arm) != {"name", "drop"}:
                raise ConfigError(f"{path}: arms.{name}: an arm is dropped with {{name: {name}, drop: true}} "
                                  f"and nothing else, got {arm!r}")
            if name not in index:
                raise ConfigError(f"{path}: arms.{name}: drop: {base_path} has no arm named {name}")
            arms[index[name]] = None
        elif name in index:
            arms[index[name]] = _merge(arms[index[name]], arm, path, base_path)
        else:
            index[name] = len(arms)
            arms.append(arm)
    return [arm for arm in arms if arm is not None]


def load_config(path: str | None, overrides: list[str] = (), cls=RunConfig):
    """YAML file (optional, with the files it ``extends`` merged under it: :func:`read_tree`) + ``a.b=value``
    overrides (values parsed as YAML) -> typed config. An error in the file's keys or values names the file."""
    file_tree = read_tree(path) if path else {}
    tree = copy.deepcopy(file_tree)
    for ov in overrides:
        if "=" not in ov:
            raise ConfigError(f"override '{ov}' is not of the form key=value")
        key, raw = ov.split("=", 1)
        _set_dotted(tree, key.strip(), yaml.safe_load(raw) if raw.strip() else "")
    try:
        return from_dict(cls, tree)
    except ConfigError as e:
        if not path:
            raise
        try:  # the file alone parses: the overrides brought the error
            from_dict(cls, file_tree)
        except ConfigError:
            raise ConfigError(f"{path}: {e}") from None
        raise ConfigError(f"override: {e}") from None


def dump_config(cfg) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
