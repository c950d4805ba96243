"""Typed run configuration: dataclasses with defaults and comments, read from YAML, with dotted
``key=value`` overrides from the command line. Unknown keys are errors.

A method's own knobs live with the method: ``loss:`` holds ``name`` plus the parameters of that
loss's own dataclass (see ``losses/``).

    cfg = load_config("configs/dpo.yaml", ["train.lr=1e-6", "loss.beta=0.2"])
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import ConfigError
from .reweight.policy_ratio import PolicyRatioConfig


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
    policy_ratio: "PolicyRatioConfig | None" = None
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


def from_dict(cls, data: dict, prefix: str = ""):
    """Build dataclass ``cls`` from a mapping; unknown keys and wrong types raise ConfigError."""
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        where = f" in '{prefix}'" if prefix else ""
        raise ConfigError(f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}{where}; known: {', '.join(names)}")
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


def load_config(path: str | None, overrides: list[str] = (), cls=RunConfig):
    """YAML file (optional) + ``a.b=value`` overrides (values parsed as YAML) -> typed config."""
    tree: dict = {}
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {path} not found")
        try:
            tree = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({e})") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
    for ov in overrides:
        if "=" not in ov:
            raise ConfigError(f"override '{ov}' is not of the form key=value")
        key, raw = ov.split("=", 1)
        _set_dotted(tree, key.strip(), yaml.safe_load(raw) if raw.strip() else "")
    return from_dict(cls, tree)


def dump_config(cfg) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
