"""Sampling backends by name (``backend:`` of ``shiftalign sample``), one registry entry each.

A backend's ``generate(model, tokenizer, model_path, prompt_ids, params, seed)`` returns, for each
prompt, ``params.n`` dicts ``completion_ids``, ``logp``, ``finished``; ``seed`` is one seed per prompt
(``rollout.sample.prompt_seed``), which each backend honours row by row, so a prompt's samples do not depend
on the batch it was drawn in. ``loads_model`` declares
whether it samples from the HF model loaded in this process (``model``, ``tokenizer`` given) or
loads the model itself from ``model_path`` (``model`` is then None; the tokenizer is still given,
for rendering prompts and decoding responses).

- ``decode``: ``rollout.decode``, a plain decode loop on the HF model's KV cache (the default); it alone
  ``reads_kl``: with ``kl_to`` in the sample config, its engine is that baseline model and each sample gets
  ``kl`` from the logits it was drawn from (``rollout.kl``);
- ``hf``: transformers' ``generate`` (``rollout.generate``);
- ``vllm``: vLLM, when it is installed; with ``vllm.lora_adapters`` a LoRA policy is served as an adapter
  request on an engine of its base model (``vllm_adapter``, ``rollout.generate``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..registry import Registry
from .decode import decode
from .generate import generate_hf, generate_vllm, release_vllm, vllm_engine
from .kl import add_kl


@dataclass(frozen=True)
class SamplerBackend:
    name: str
    generate: Callable  # (model, tokenizer, engine, prompt_ids, params, seed) -> list[list[dict]]
    loads_model: bool  # True: samples from the model loaded here; False: from its own engine (``start``)
    start: Callable | None = None  # (sample config) -> an engine built once per sampling stage
    stop: Callable | None = None  # (engine) -> None: its memory released before anything else (training) runs
    reads_kl: bool = False  # True: honours the sample config's ``kl_to`` (each sample gets ``kl``)


SAMPLERS: Registry[SamplerBackend] = Registry("sampling backend")


def _decode(model, tok, engine, prompt_ids, p, seed):
    results = decode(model, prompt_ids, p, seed, tok.pad_token_id, tok.eos_token_id, keep_logits=engine is not None)
    if engine is not None:  # the baseline of ``kl_to``
        add_kl(engine, tok.pad_token_id, prompt_ids, results, p.temperature if p.temperature > 0 else 1.0)
    return results


def _decode_start(cfg):
    """The baseline model of ``kl_to``, loaded once per sampling stage beside the policy; None without it."""
    if not cfg.kl_to:
        return None
    import torch

    from ..config import ModelConfig
    from ..models.load import load_policy

    base, _ = load_policy(ModelConfig(path=cfg.kl_to))
    return base.eval().to("cuda" if torch.cuda.is_available() else "cpu")


def _hf(model, tok, engine, prompt_ids, p, seed):
    return generate_hf(model, tok, prompt_ids, p, seed)


def _vllm(model, tok, engine, prompt_ids, p, seed):
    return generate_vllm(engine, prompt_ids, p, seed)


def vllm_adapter(cfg):
    """The LoRA adapter (``models.adapter.LoraAdapter``) that ``backend: vllm`` serves for ``cfg.policy`` as an
    adapter request: with ``vllm.lora_adapters`` and a LoRA policy; else None (the policy's own weights are loaded).
    A bare adapter directory without that setting has no weights of its own to load: refused."""
    from ..errors import ConfigError
    from ..models.adapter import find_adapter, is_adapter_dir

    if cfg.backend != "vllm":
        return None
    if cfg.vllm.lora_adapters:
        return find_adapter(cfg.policy.path)
    if is_adapter_dir(cfg.policy.path):
        raise ConfigError(f"policy.path: {cfg.policy.path} is a peft adapter directory; vLLM samples it as an adapter "
                          "request on its base model with vllm.lora_adapters: true")
    return None


def _vllm_start(cfg):
    from ..models.packaged import resolve_model_path

    return vllm_engine(resolve_model_path(cfg.policy.path), cfg.sampling.seed, cfg.vllm, vllm_adapter(cfg))


SAMPLERS.register("decode", SamplerBackend("decode", _decode, loads_model=True, start=_decode_start,
                                           stop=lambda engine: None, reads_kl=True))
SAMPLERS.register("hf", SamplerBackend("hf", _hf, loads_model=True))
SAMPLERS.register("vllm", SamplerBackend("vllm", _vllm, loads_model=False, start=_vllm_start, stop=release_vllm))
