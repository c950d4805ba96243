"""Batched sampling from a Hugging Face causal LM, written as a plain decode loop over its KV cache.

The loop computes what ``model.generate(do_sample=True)`` computes — left-padded prompts, positions
counted from each row's first real token, the KV cache, temperature, top-k, top-p (nucleus sampling,
Holtzman et al., 2020), stop at EOS — with two differences that matter on a CPU:

- **One uniform draw per row.** A token is drawn by inverting the cumulative distribution of the
  tempered, truncated next-token probabilities (``searchsorted`` of one uniform in their cumsum), an
  exact draw from the same categorical. ``torch.multinomial``, which ``generate`` calls, draws an
  exponential for each of the 49,152 vocabulary entries of every row at every step.
- **The prompt once.** The prompt's forward (the prefill) runs once per prompt, not once per sample: its
  KV cache and first logits are repeated for the ``n`` samples before the first draw.
- **Log-probs as it goes.** Each sampled token's log-prob under the untempered policy, log pi(y_t | x,
  y_<t) (what density ratios and the ``logp`` of a sample row are), and optionally its log-prob and
  the entropy under the tempered policy pi_T (what online RL's ratio, KL and entropy use) are read off
  the step's logits. ``generate`` would have to keep every step's full-vocabulary logits
  (``output_logits``) for that.

On the packaged 135M model the two make sampling faster than ``generate``, more so at larger batches
(bench/sampling_throughput.py; the ratios are in BENCHMARKS.md). Greedy decoding (temperature 0) takes the argmax;
its tokens and log-probs equal ``generate``'s (tests/test_decode.py).

    results = decode(model, [prompt_ids, ...], SamplingParams(n=4, temperature=0.8), seed=0,
                     pad_id=tok.pad_token_id, eos_id=tok.eos_token_id)
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

from .params import SamplingParams, left_padded


def truncate(scaled: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Tempered logits (B, V) with the entries outside the top-k and outside the nucleus set to -inf.
    The nucleus is the smallest set of most probable tokens whose probability reaches ``top_p``; the
    most probable token is always kept."""
    if top_k and top_k < scaled.shape[-1]:
        kth = scaled.topk(top_k, -1).values[:, -1:]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = scaled.sort(-1, descending=True)
        probs = sorted_logits.softmax(-1)
        before = probs.cumsum(-1) - probs  # probability of the tokens ranked above each one
        drop = before >= top_p
        drop[:, 0] = False
        scaled = scaled.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return scaled


def draw(scaled: torch.Tensor, generator: torch.Generator | None = None, u: torch.Tensor | None = None) -> torch.Tensor:
    """One token per row (B,) from softmax(scaled): a uniform in [0, total) located in the cumsum of the
    probabilities (``u``: the rows' uniforms in [0, 1), else drawn from ``generator``). ``right=True`` skips
    tokens of probability 0 even when the uniform is exactly 0."""
    cdf = scaled.softmax(-1).cumsum(-1)
    if u is None:
        u = torch.rand(cdf.shape[0], generator=generator, device=cdf.device)
    return torch.searchsorted(cdf, u[:, None] * cdf[:, -1:], right=True)[:, 0].clamp(max=cdf.shape[-1] - 1)


def prompt_uniforms(seeds: list[int], n: int, steps: int) -> torch.Tensor:
    """(len(seeds) * n, steps) uniforms: prompt i's n rows from a generator of its own seed, so a prompt draws
    the same samples whatever else is in its batch (a resumed job draws what an uninterrupted one draws)."""
    return torch.cat([torch.rand(n, steps, generator=torch.Generator().manual_seed(s)) for s in seeds])


def cache_argument(model) -> str:
    """The forward argument that takes the KV cache: ``cache`` from transformers 5.2x on (where
    ``past_key_values`` is deprecated), ``past_key_values`` before."""
    import inspect

    from ..ops.logprobs import unwrap_hf

    return "cache" if "cache" in inspect.signature(unwrap_hf(model).forward).parameters else "past_key_values"


@torch.inference_mode()
def decode(model, prompt_ids: list[list[int]], p: SamplingParams, seed: int | list[int], pad_id: int, eos_id: int,
           tempered: bool = False, keep_logits: bool = False) -> list[list[dict]]:
    """For each prompt, ``p.n`` dicts: ``completion_ids`` (up to and including EOS), ``logp`` (their summed
    untempered log-prob) and ``finished`` (EOS reached). With ``tempered`` (temperature > 0), also
    ``token_logps`` and ``token_entropy``: per token, under pi_T = softmax(logits / T) without truncation.
    With ``keep_logits``, also ``logits``: the (len, V) fp32 logits each token was drawn from (untempered,
    untruncated; ``rollout.kl`` reads the KL to a baseline from them without a second forward of the policy).
    ``seed``: one seed for the batch, or one per prompt (``prompt_uniforms``: each prompt's draws its own)."""
    if not isinstance(seed, int) and len(seed) != len(prompt_ids):
        raise ValueError(f"one seed per prompt: got {len(seed)} seeds for {len(prompt_ids)} prompts")
    if tempered and p.temperature <= 0:
        raise ValueError("tempered log-probs need a temperature > 0")
    device = next(model.parameters()).device
    ids, mask = (t.to(device) for t in left_padded(prompt_ids, pad_id, 1))
    B, greedy = ids.shape[0] * p.n, p.temperature == 0
    per_prompt = not isinstance(seed, int)
    generator = None if per_prompt else torch.Generator(device=device).manual_seed(seed)
    uniforms = prompt_uniforms(list(seed), p.n, p.max_new_tokens).to(device) if per_prompt else None
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache, cache_arg = DynamicCache(), cache_argument(model)  # the cache is filled in place by each forward
    tokens = torch.full((B, p.max_new_tokens), pad_id, dtype=torch.long, device=device)
    logps = torch.zeros(B, p.max_new_tokens, device=device)
    t_logps, t_entropy = torch.zeros_like(logps), torch.zeros_like(logps)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    kept = None
    inputs, steps = ids, 0
    for t in range(p.max_new_tokens):
        out = model(input_ids=inputs, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1,
                    **{cache_arg: cache})
        logits = out.logits[:, -1].float()
        if t == 0 and p.n > 1:  # the prompt was computed once: its cache and first logits serve its n samples
            cache.batch_repeat_interleave(p.n)
            logits, mask, positions = (x.repeat_interleave(p.n, 0) for x in (logits, mask, positions))
        if greedy:
            nxt = logits.argmax(-1)
        else:
            nxt = draw(truncate(logits / p.temperature, p.top_k, p.top_p), generator,
                       uniforms[:, t] if per_prompt else None)
        nxt = nxt.masked_fill(done, pad_id)
        if keep_logits:
            if kept is None:
                kept = torch.empty(B, p.max_new_tokens, logits.shape[-1], device=device)
            kept[:, t] = logits
        live = (~done).float()
        tokens[:, t] = nxt
        lsm = logits.log_softmax(-1)
        logps[:, t] = lsm.gather(-1, nxt[:, None])[:, 0] * live
        if tempered:
            t_lsm = lsm if p.temperature == 1.0 else (logits / p.temperature).log_softmax(-1)
            t_logps[:, t] = t_lsm.gather(-1, nxt[:, None])[:, 0] * live
            t_entropy[:, t] = -(t_lsm.exp() * t_lsm).sum(-1) * live
        done |= nxt == eos_id
        steps = t + 1
        if bool(done.all()):
            break
        inputs = nxt[:, None]
        mask = torch.cat([mask, torch.ones(B, 1, dtype=mask.dtype, device=device)], 1)
        positions = positions[:, -1:] + 1
    tokens, logps = tokens[:, :steps].cpu(), logps[:, :steps].cpu()
    t_logps, t_entropy = t_logps[:, :steps].cpu(), t_entropy[:, :steps].cpu()
    results: list[list[dict]] = [[] for _ in prompt_ids]
    for j in range(B):
        row = tokens[j].tolist()
        finished = eos_id in row
        k = row.index(eos_id) + 1 if finished else len(row)
        res = {"completion_ids": row[:k], "logp": float(logps[j, :k].sum()), "finished": finished}
        if tempered:
            res["token_logps"], res["token_entropy"] = t_logps[j, :k], t_entropy[j, :k]
        if keep_logits:
            res["logits"] = kept[j, :k]
        results[j // p.n].append(res)
    return results
