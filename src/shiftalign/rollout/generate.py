"""Sampling with the external generators: transformers' ``generate`` and vLLM.

Both return what ``rollout.decode.decode`` returns: for each prompt, n dicts ``completion_ids`` (up
to and including EOS), ``logp`` (the response's log-prob under the policy at temperature 1: from the
raw logits of the same ``generate`` pass; vLLM's cumulative log-prob) and ``finished`` (EOS reached).
``generate_hf`` is what the committed shift data was sampled with; ``decode`` is faster on a CPU.

A LoRA policy with ``vllm.lora_adapters`` (``models.adapter``) is served as vLLM's multi-LoRA serving docs
describe (docs.vllm.ai, "LoRA Adapters"): an engine over the adapter's base model with ``enable_lora=True``,
``max_loras=1`` and ``max_lora_rank`` at least the adapter's rank, every request carrying
``LoRARequest(name, int_id, path)``. Base plus adapter is the merged model in exact arithmetic, not in floating
point (the merged weights are rounded once, the adapter's product apart), so its rows get a sample key of their
own (``rollout.sample.sample_key``). The engine lives for one sampling stage as before: an ``iterate`` round's
adapter is trained on the previous round's merged policy, so no two rounds share a base, and training runs between
them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..errors import ConfigError
from ..log import log
from .params import SamplingParams, left_padded


@torch.inference_mode()
def generate_hf(model, tokenizer, prompt_ids: list[list[int]], p: SamplingParams, seed: int | list[int]) -> list[list[dict]]:
    """For each prompt, n dicts {completion_ids, logp, finished}: one batched, left-padded generate. With one
    seed per prompt, one generate per prompt under its own seed (``generate`` draws from the global generator,
    so rows of one call cannot have seeds of their own)."""
    if not isinstance(seed, int):
        return [generate_hf(model, tokenizer, [ids], p, s)[0] for ids, s in zip(prompt_ids, seed)]
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id
    ids, mask = left_padded(prompt_ids, pad, p.n)  # n rows per prompt
    L = ids.shape[1]
    torch.manual_seed(seed)
    greedy = p.temperature == 0
    out = model.generate(
        input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=not greedy,
        temperature=None if greedy else p.temperature, top_p=None if greedy else p.top_p,
        top_k=(p.top_k or None) if not greedy else None, max_new_tokens=p.max_new_tokens,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=pad,
        return_dict_in_generate=True, output_logits=True, use_cache=True)
    seqs = out.sequences[:, L:].cpu()
    logits = torch.stack(out.logits, 1).float().cpu()  # (B*n, new, V): raw, before temperature / top-p
    token_logps = torch.log_softmax(logits, -1).gather(-1, seqs[..., None])[..., 0]
    results: list[list[dict]] = [[] for _ in prompt_ids]
    for j in range(seqs.shape[0]):
        toks = seqs[j].tolist()
        finished = tokenizer.eos_token_id in toks
        k = toks.index(tokenizer.eos_token_id) + 1 if finished else len(toks)
        results[j // p.n].append({"completion_ids": toks[:k], "logp": float(token_logps[j, :k].sum()),
                                  "finished": finished})
    return results


LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the max_lora_rank values vLLM takes (vllm.config.lora)


@dataclass
class VLLMEngine:
    """A sampling stage's vLLM engine and the adapter request every generate carries (None: the engine's model)."""

    llm: object  # vllm.LLM
    lora_request: object | None = None  # vllm.lora.request.LoRARequest


def vllm_engine(model_path: str, seed: int, settings=None, adapter=None) -> VLLMEngine:
    """One vLLM engine for a sampling stage, reused for every batch. Its log-probs are the model's raw ones
    (``logprobs_mode="raw_logprobs"``: before temperature and truncation), so a row's ``logp`` is log pi(y|x)
    at temperature 1, as the decode loop records it. With ``adapter`` (``models.adapter.LoraAdapter``) the engine
    is built over the adapter's base with LoRA enabled, and the adapter is served as a request."""
    try:
        from vllm import LLM
    except ImportError:
        raise ConfigError("backend vllm needs vLLM installed: pip install 'shiftalign[vllm]'") from None
    knobs = {} if settings is None else {k: v for k, v in asdict(settings).items()
                                         if v is not None and k != "lora_adapters"}  # ours, not an LLM argument
    if "enable_chunked_prefill" not in knobs and not torch.cuda.is_available():
        # vLLM 0.32 on a CPU rewinds a seeded request's generator when its prompt is prefilled in chunks (a
        # partial prefill's sampled token is discarded), which the CPU generator cannot do: the engine stops with
        # "CPU Generator does not use offset" (64 prompts x 4 samples here). Every request here is seeded.
        knobs["enable_chunked_prefill"] = False
    if adapter is None:
        return VLLMEngine(LLM(model=model_path, seed=seed, logprobs_mode="raw_logprobs", **knobs))
    from vllm.lora.request import LoRARequest

    rank = next((r for r in LORA_RANKS if r >= adapter.rank), None)
    if rank is None:
        raise ConfigError(f"{adapter.path}: LoRA rank {adapter.rank} is above vLLM's largest max_lora_rank "
                          f"({LORA_RANKS[-1]}); sample the merged model (vllm.lora_adapters: false)")
    log(f"vllm: the LoRA adapter {adapter.path} served on its base {adapter.base} (max_lora_rank {rank})")
    llm = LLM(model=adapter.base, seed=seed, logprobs_mode="raw_logprobs", enable_lora=True, max_loras=1,
              max_lora_rank=rank, **knobs)
    return VLLMEngine(llm, LoRARequest("policy", 1, adapter.path))


def release_vllm(engine) -> None:
    """The engine's memory back before training starts (the stage is done with it)."""
    import gc

    del engine
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def generate_vllm(engine, prompt_ids: list[list[int]], p: SamplingParams, seed: int | list[int]) -> list[list[dict]]:
    """For each prompt, n dicts {completion_ids, logp, finished} from ``engine`` (``vllm_engine``): one request
    per prompt, each with the prompt's own seed. A response without a log-prob stops the stage (never 0)."""
    from vllm import SamplingParams as VSP

    seeds = [seed] * len(prompt_ids) if isinstance(seed, int) else list(seed)
    sps = [VSP(n=p.n, temperature=p.temperature, top_p=p.top_p, top_k=p.top_k or -1, max_tokens=p.max_new_tokens,
               seed=s, logprobs=0) for s in seeds]
    lora = {} if engine.lora_request is None else {"lora_request": engine.lora_request}
    outs = engine.llm.generate([{"prompt_token_ids": ids} for ids in prompt_ids], sps, **lora)
    results = []
    for o in outs:
        if any(c.cumulative_logprob is None for c in o.outputs):
            raise RuntimeError("vLLM returned a response without its log-prob; the samples' logp cannot be recorded")
        results.append([{"completion_ids": list(c.token_ids), "logp": float(c.cumulative_logprob),
                         "finished": c.finish_reason == "stop"} for c in o.outputs])
    return results
