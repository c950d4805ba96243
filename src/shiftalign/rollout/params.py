"""What every sampler reads: the sampling parameters, and the prompts as left-padded tensors.

Below the samplers (``rollout.decode``, ``rollout.generate``) and the sampling command
(``rollout.sample``), so that each can import them without importing the others.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SamplingParams:
    n: int = 4  # responses per prompt
    max_new_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0: off
    seed: int = 0


@dataclass
class VLLMConfig:
    """The vLLM engine's settings (``backend: vllm``); read only by that backend."""

    tensor_parallel_size: int = 1  # GPUs one engine spans
    gpu_memory_utilization: float = 0.9  # share of each GPU's memory the engine may take
    dtype: str = "auto"  # the weights' dtype in the engine (auto: the checkpoint's, bf16 for fp32 on a GPU)
    enforce_eager: bool = False  # true: no CUDA graphs (slower; less memory, quicker to start)
    max_model_len: int | None = None  # the context the engine reserves memory for (None: the model's)
    # None: vLLM's default on a GPU, off on a CPU, where vLLM 0.32 stops with "CPU Generator does not use offset"
    # once a seeded request's prompt is prefilled in chunks (rollout.generate.vllm_engine)
    enable_chunked_prefill: bool | None = None
    lora_adapters: bool = False  # true: a LoRA policy (a LoRA run's model/ beside its adapter/, or a peft adapter
    # directory) is served as a vLLM LoRA adapter request on an engine of its base model, not as its merged weights
    # (rollout.generate); a policy that is not LoRA is sampled as without it


def left_padded(prompt_ids: list[list[int]], pad_id: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask (B * n, L) of the prompts padded on the left, each repeated n times."""
    L = max(map(len, prompt_ids))
    ids = torch.full((len(prompt_ids), L), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p_ids in enumerate(prompt_ids):
        ids[i, L - len(p_ids):] = torch.tensor(p_ids)
        mask[i, L - len(p_ids):] = 1
    return ids.repeat_interleave(n, 0), mask.repeat_interleave(n, 0)
