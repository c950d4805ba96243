"""A LoRA policy on disk, found from its path, and what serving it as an adapter needs.

A policy path is a LoRA policy when it is a peft adapter directory (``adapter_config.json`` beside the adapter's
weights, what peft's ``save_pretrained`` writes), or a shiftalign LoRA run's ``model/`` (the merged model) beside
the run's ``adapter/`` (both written by ``recipes.common.save_final``). Its base model is the adapter config's
``base_model_name_or_path`` (the packaged ``default`` resolved as ``models.packaged.resolve_model_path`` resolves
it); its rank is the largest LoRA rank in it (``r``, or a larger one of ``rank_pattern``). Read by vLLM's adapter
requests (``vllm.lora_adapters``, ``rollout.generate``) and by ``models.load.load_tokenizer`` (an adapter
directory without a tokenizer of its own reads its base model's).

    adapter = find_adapter("runs/dpo_lora/model")  # LoraAdapter(path="runs/dpo_lora/adapter", base=..., rank=16)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from .packaged import check_model_path, resolve_model_path

ADAPTER_CONFIG = "adapter_config.json"


@dataclass(frozen=True)
class LoraAdapter:
    path: str  # the peft adapter directory (adapter_config.json and its weights)
    base: str  # the model the adapter applies to: a local directory or a hub id
    rank: int  # the largest LoRA rank in it


def is_adapter_dir(path: str) -> bool:
    """Whether ``path`` is itself a peft adapter directory (nothing is read but the directory listing)."""
    return (Path(resolve_model_path(path)) / ADAPTER_CONFIG).is_file()


def read_adapter(directory: str | Path) -> LoraAdapter:
    """The LoRA adapter in ``directory``; a config that is not a LoRA adapter's, or whose base model cannot be
    found, stops with the file and the field."""
    where = Path(directory) / ADAPTER_CONFIG
    try:
        cfg = json.loads(where.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{where}: cannot read the adapter config: {e}") from None
    if cfg.get("peft_type") != "LORA":
        raise ConfigError(f"{where}: peft_type: expected LORA, got {cfg.get('peft_type')!r}")
    base = cfg.get("base_model_name_or_path")
    if not base:
        raise ConfigError(f"{where}: base_model_name_or_path is empty; the adapter's base model is unknown")
    check_model_path(base, f"{where}: base_model_name_or_path")
    ranks = [cfg.get("r"), *(cfg.get("rank_pattern") or {}).values()]
    if not all(isinstance(r, int) and r > 0 for r in ranks):
        raise ConfigError(f"{where}: r / rank_pattern: expected positive integers, got {ranks}")
    return LoraAdapter(str(directory), resolve_model_path(base), max(ranks))


def find_adapter(path: str) -> LoraAdapter | None:
    """The LoRA adapter behind a policy path: the path itself when it is an adapter directory, the run's
    ``adapter/`` when it is a LoRA run's ``model/``; None for a policy that is not LoRA."""
    p = Path(resolve_model_path(path))
    if (p / ADAPTER_CONFIG).is_file():
        return read_adapter(p)
    if p.name == "model" and (p.parent / "adapter" / ADAPTER_CONFIG).is_file():
        return read_adapter(p.parent / "adapter")
    return None


def tokenizer_path(path: str) -> str:
    """Where the tokenizer of the model at ``path`` is read: the path itself, or for an adapter directory without
    a tokenizer of its own (peft saves none) its base model."""
    resolved = resolve_model_path(path)
    if (Path(resolved) / ADAPTER_CONFIG).is_file() and not (Path(resolved) / "tokenizer_config.json").is_file():
        return read_adapter(resolved).base
    return resolved
