"""Load a causal LM (policy) or a reward model (causal-LM body + scalar head) and its tokenizer.

- any HF causal LM by local path or hub name (``trust_remote_code`` only when asked);
- ``path: default`` is the packaged SmolLM2-135M-Instruct (see ``models.packaged``);
- ``dtype: auto`` keeps fp32 weights and picks the compute precision: fp32 on a CPU (bf16 autocast
  on a CPU without fast bf16 matmul is far slower), bf16 autocast on a GPU that supports it;
- LoRA through ``peft``: the reference model is then the base with the adapter disabled;
- reward models are saved so ``AutoModelForSequenceClassification.from_pretrained`` loads them;
- ``attn_implementation`` must be a kernel that takes the 4-D boolean "tree" attention mask of
  ``data.batching`` (``sdpa``, or ``eager``, which gets it as an additive mask): kernels that take
  only 2-D padding masks (``flash_attention_2``, ...) would silently attend across branches.
"""

from __future__ import annotations

import torch

from ..config import ModelConfig
from ..errors import ConfigError
from .packaged import resolve_model_path


def process_device() -> torch.device:
    """This process's device as accelerate assigns it: its GPU under torchrun / accelerate launch (or the
    only GPU), else the CPU. Joins the process group when launched as one."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available()).device


def mixed_precision(cfg: ModelConfig) -> str:
    """accelerate's ``mixed_precision`` for this config: 'no' or 'bf16'."""
    if cfg.dtype == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    if cfg.dtype in ("float32", "fp32"):
        return "no"
    if cfg.dtype in ("bfloat16", "bf16"):
        return "bf16"
    raise ConfigError(f"model.dtype: expected auto, float32 or bfloat16, got {cfg.dtype!r}")


TREE_MASK_KERNELS = ("sdpa", "eager")


def check_attention(cfg: ModelConfig) -> None:
    if cfg.attn_implementation not in TREE_MASK_KERNELS:
        raise ConfigError(f"model.attn_implementation: expected one of {', '.join(TREE_MASK_KERNELS)} (kernels that take "
                          f"the 4-D tree attention mask of shiftalign's packed rows), got {cfg.attn_implementation!r}")


def load_tokenizer(path: str, trust_remote_code: bool = False):
    """The tokenizer of the model at ``path`` (a peft adapter directory without one: its base model's)."""
    from transformers import AutoTokenizer

    from .adapter import tokenizer_path

    tok = AutoTokenizer.from_pretrained(tokenizer_path(path), trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if tok.eos_token_id is None:
        raise ConfigError(f"the tokenizer of {path} has no EOS token; responses need one")
    return tok


def snap_to_bf16(model) -> int:
    """Round every floating-point weight to the nearest bfloat16 value, kept in fp32; returns how many
    changed. Under bf16 autocast the forward already uses these rounded values, so nothing it computes
    changes; but a weight stored exactly halfway between two bf16 values (the packaged checkpoint has
    many: about 5 % of an MLP matrix) otherwise flips a whole bf16 step (~4e-4) under any update, however
    small, in the update's direction: an lr of 5e-7 then moved the packaged model's log-probs by 7 nats in
    one DPO step (fp32: 0.2). On the grid, an update changes the bf16 weight only once the fp32 master
    weight has moved half a step (bench/bf16_step.py)."""
    changed = 0
    with torch.no_grad():
        for p in model.parameters():
            if p.is_floating_point() and p.dtype != torch.bfloat16:
                snapped = p.to(torch.bfloat16).to(p.dtype)
                changed += int((snapped != p).sum())
                p.copy_(snapped)
    return changed


def _finish(model, cfg: ModelConfig):
    if mixed_precision(cfg) == "bf16":
        n = snap_to_bf16(model)
        if n:
            from ..log import log
            log(f"bf16 autocast: {n} weights rounded to the bf16 grid (see models.load.snap_to_bf16)")
    if cfg.lora is not None:
        from peft import LoraConfig, get_peft_model

        task = "SEQ_CLS" if hasattr(model, "score") else "CAUSAL_LM"
        lora = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                          target_modules=cfg.lora.target_modules, task_type=task)
        model = get_peft_model(model, lora)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if cfg.lora is not None:
            model.enable_input_require_grads()
    return model


def load_policy(cfg: ModelConfig):
    """(model, tokenizer) of a causal LM, LoRA-wrapped when configured."""
    from transformers import AutoModelForCausalLM

    check_attention(cfg)
    path = resolve_model_path(cfg.path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, trust_remote_code=cfg.trust_remote_code,
                                                 attn_implementation=cfg.attn_implementation)
    return _finish(model, cfg), load_tokenizer(cfg.path, cfg.trust_remote_code)


def load_reward_model(cfg: ModelConfig):
    """(model, tokenizer) of a sequence-classification model with one output (a scalar reward).
    From a causal LM checkpoint the body is reused and the scalar head starts fresh."""
    from transformers import AutoModelForSequenceClassification

    check_attention(cfg)
    path = resolve_model_path(cfg.path)
    tok = load_tokenizer(cfg.path, cfg.trust_remote_code)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=1, dtype=torch.float32, trust_remote_code=cfg.trust_remote_code,
        attn_implementation=cfg.attn_implementation)
    model.config.pad_token_id = tok.pad_token_id
    return _finish(model, cfg), tok
