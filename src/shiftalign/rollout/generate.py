"""Sampling with the external generators: transformers' ``generate`` and vLLM.

Both return what ``rollout.decode.decode`` returns: for each prompt, n dicts ``completion_ids`` (up
to and including EOS), ``logp`` (the response's log-prob under the policy at temperature 1: from the
raw logits of the same ``generate`` pass; vLLM's cumulative log-prob) and ``finished`` (EOS reached).
``generate_hf`` is what the committed shift data was sampled with; ``decode`` is faster on a CPU.
"""

from __future__ import annotations

from dataclasses import asdict

import torch

from ..errors import ConfigError
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


def vllm_engine(model_path: str, seed: int, settings=None):
    """One vLLM engine for a sampling stage, reused for every batch. Its log-probs are the model's raw ones
    (``logprobs_mode="raw_logprobs"``: before temperature and truncation), so a row's ``logp`` is log pi(y|x)
    at temperature 1, as the decode loop records it."""
    try:
        from vllm import LLM
    except ImportError:
        raise ConfigError("backend vllm needs vLLM installed: pip install 'shiftalign[vllm]'") from None
    knobs = {} if settings is None else {k: v for k, v in asdict(settings).items() if v is not None}
    return LLM(model=model_path, seed=seed, logprobs_mode="raw_logprobs", **knobs)


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
    outs = engine.generate([{"prompt_token_ids": ids} for ids in prompt_ids], sps)
    results = []
    for o in outs:
        if any(c.cumulative_logprob is None for c in o.outputs):
            raise RuntimeError("vLLM returned a response without its log-prob; the samples' logp cannot be recorded")
        results.append([{"completion_ids": list(c.token_ids), "logp": float(c.cumulative_logprob),
                         "finished": c.finish_reason == "stop"} for c in o.outputs])
    return results
