"""Sampling throughput: batched, left-padded, length-sorted ``generate`` (shiftalign sample) against
one prompt at a time, on the packaged SmolLM2-135M-Instruct.

Both generate exactly ``--new-tokens`` tokens per response (EOS suppressed by a minimum length),
so both produce the same number of tokens; tokens/s = generated tokens / wall time.

    python bench/sampling_throughput.py           # writes bench/results/sampling_throughput.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from shiftalign.config import ModelConfig
from shiftalign.data.load import load_examples
from shiftalign.data.text import encode, render_prompt
from shiftalign.models.load import load_policy


@torch.inference_mode()
def run(model, tok, prompts: list[list[int]], batch: int, new_tokens: int, n: int) -> float:
    t0 = time.perf_counter()
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    for s in range(0, len(order), batch):
        chunk = [prompts[i] for i in order[s:s + batch]]
        L = max(map(len, chunk))
        ids = torch.full((len(chunk), L), tok.pad_token_id)
        mask = torch.zeros_like(ids)
        for j, p in enumerate(chunk):
            ids[j, L - len(p):] = torch.tensor(p)
            mask[j, L - len(p):] = 1
        ids, mask = ids.repeat_interleave(n, 0), mask.repeat_interleave(n, 0)
        torch.manual_seed(0)
        model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0, max_new_tokens=new_tokens,
                       min_new_tokens=new_tokens, pad_token_id=tok.pad_token_id, use_cache=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", default="data/quickstart/train.jsonl")
    ap.add_argument("--count", type=int, default=16)
    ap.add_argument("--n", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16, help="prompts per generate call in the batched arm")
    ap.add_argument("--out", default="bench/results/sampling_throughput.json")
    a = ap.parse_args()
    model, tok = load_policy(ModelConfig())
    model.eval()
    ex = load_examples(a.prompts, "prompt")[: a.count]
    prompts = [encode(tok, render_prompt(tok, e.prompt, True)) for e in ex]
    total = len(prompts) * a.n * a.new_tokens
    run(model, tok, prompts[:2], 2, 4, 1)  # warm-up
    single = run(model, tok, prompts, 1, a.new_tokens, a.n)
    batched = run(model, tok, prompts, a.batch, a.new_tokens, a.n)
    res = {"prompts": len(prompts), "n": a.n, "new_tokens": a.new_tokens, "tokens": total,
           "one_at_a_time_s": single, "batched_s": batched, "one_at_a_time_tok_s": total / single,
           "batched_tok_s": total / batched, "speedup": single / batched, "batch_prompts": a.batch,
           "threads": torch.get_num_threads()}
    print(f"one prompt at a time: {res['one_at_a_time_tok_s']:.1f} tok/s; batched ({a.batch} prompts x {a.n}): "
          f"{res['batched_tok_s']:.1f} tok/s; speed-up x{res['speedup']:.2f}")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
