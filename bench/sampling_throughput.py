"""Sampling throughput on the packaged SmolLM2-135M-Instruct: shiftalign's decode loop
(``rollout.decode``, the default backend) against transformers' ``generate`` (``backend: hf``), both
batched as ``shiftalign sample`` batches (left-padded, length-sorted), and ``generate`` one prompt at a
time; with ``--vllm`` (run in the vLLM environment, ``make test-vllm`` builds ``.venv-vllm``), also vLLM
(``backend: vllm``: one engine, float32, eager mode, every prompt a request with its own seed), whose engine
build is timed apart.

Every arm samples the same prompts (the default regime's held-out target prompts, chat template) with
the evaluation's settings: n samples per prompt, temperature 0.7, up to ``--new-tokens`` tokens,
stopping at EOS. Lengths then vary with the draws, so the arms are compared in generated tokens per
second (EOS included), each the median of ``--repeats`` passes.

    python bench/sampling_throughput.py           # ~8 minutes; writes bench/results/sampling_throughput.json
    .venv-vllm/bin/python bench/sampling_throughput.py --vllm --out bench/results/sampling_throughput_vllm.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from shiftalign.config import ModelConfig
from shiftalign.data.load import load_examples
from shiftalign.data.text import encode, render_prompt
from shiftalign.models.load import load_policy
from shiftalign.models.packaged import resolve_model_path
from shiftalign.rollout.decode import decode
from shiftalign.rollout.generate import generate_hf, generate_vllm, vllm_engine
from shiftalign.rollout.params import SamplingParams, VLLMConfig


def run(model, tok, prompts: list[list[int]], sequences: int, p: SamplingParams, backend: str,
        engine=None) -> tuple[float, int]:
    """Wall seconds and generated tokens for sampling ``p.n`` responses of every prompt, ``sequences``
    sequences (prompts x n) per call (vLLM: every prompt in one call, the engine batching them itself)."""
    per_call = len(prompts) if backend == "vllm" else max(1, sequences // p.n)
    order = sorted(prompts, key=len)
    t0, tokens = time.perf_counter(), 0
    for s in range(0, len(order), per_call):
        chunk = order[s:s + per_call]
        if backend == "decode":
            out = decode(model, chunk, p, s, tok.pad_token_id, tok.eos_token_id)
        elif backend == "vllm":
            out = generate_vllm(engine, chunk, p, list(range(s, s + len(chunk))))
        else:
            out = generate_hf(model, tok, chunk, p, s)
        tokens += sum(len(x["completion_ids"]) for samples in out for x in samples)
    return time.perf_counter() - t0, tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", default="data/shift/default/target_eval_prompts.jsonl")
    ap.add_argument("--count", type=int, default=64)
    ap.add_argument("--single-count", type=int, default=8, help="prompts of the one-prompt-at-a-time arm")
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default="bench/results/sampling_throughput.json")
    ap.add_argument("--vllm", action="store_true", help="add a vLLM arm (needs vLLM installed)")
    a = ap.parse_args()
    model, tok = load_policy(ModelConfig())
    model.eval()
    ex = load_examples(a.prompts, "prompt")[: a.count]
    prompts = [encode(tok, render_prompt(tok, e.prompt, True)) for e in ex]
    p = SamplingParams(n=a.n, max_new_tokens=a.new_tokens, temperature=0.7)
    run(model, tok, prompts[:2], 8, p, "decode")  # warm-up
    arms = {"hf_generate_one_prompt": (prompts[: a.single_count], a.n, "hf"),
            "hf_generate_32": (prompts, 32, "hf"), "decode_32": (prompts, 32, "decode"),
            "decode_128": (prompts, 128, "decode")}
    res: dict = {"prompts": len(prompts), "n": a.n, "max_new_tokens": a.new_tokens, "temperature": 0.7,
                 "threads": torch.get_num_threads(), "arms": {}}
    engine = None
    if a.vllm:
        t0 = time.perf_counter()
        engine = vllm_engine(resolve_model_path("default"), 0,
                             VLLMConfig(dtype="float32", enforce_eager=True, max_model_len=512,
                                        gpu_memory_utilization=0.15))  # on a CPU: the share of RAM
        res["vllm_engine_build_seconds"] = time.perf_counter() - t0
        run(None, tok, prompts[:2], 8, p, "vllm", engine)  # warm-up
        arms["vllm"] = (prompts, len(prompts) * a.n, "vllm")
    for r in range(a.repeats):
        for name, (ps, seqs, backend) in arms.items():  # interleaved, so drift of the machine hits every arm
            sec, tokens = run(model, tok, ps, seqs, p, backend, engine)
            res["arms"].setdefault(name, []).append({"seconds": sec, "tokens": tokens, "tok_s": tokens / sec})
    for name, runs in res["arms"].items():
        med = statistics.median(x["tok_s"] for x in runs)
        res[f"{name}_tok_s"] = med
        passes = ", ".join(f"{x['tokens']} tokens in {x['seconds']:.1f} s" for x in runs)
        print(f"{name}: {med:.1f} tok/s ({passes})")
    base = res["hf_generate_32_tok_s"]
    res["speedup_decode_32_vs_hf_32"] = res["decode_32_tok_s"] / base
    res["speedup_decode_128_vs_hf_32"] = res["decode_128_tok_s"] / base
    print(f"decode vs generate at 32 sequences: x{res['speedup_decode_32_vs_hf_32']:.2f}; "
          f"decode at 128 vs generate at 32: x{res['speedup_decode_128_vs_hf_32']:.2f}")
    if a.vllm:
        res["speedup_vllm_vs_decode_128"] = res["vllm_tok_s"] / res["decode_128_tok_s"]
        res["versions"] = {"torch": torch.__version__, "transformers": __import__("transformers").__version__,
                           "vllm": __import__("vllm").__version__}
        print(f"vLLM vs decode at 128: x{res['speedup_vllm_vs_decode_128']:.2f} "
              f"(engine built in {res['vllm_engine_build_seconds']:.0f} s)")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
