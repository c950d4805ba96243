"""A GPU check in one run: DPO steps at two model sizes, one RL iteration, sampling and the evaluation's KL
pass, each through shiftalign's own code paths, on random-weight models built in this process.

Nothing is downloaded and no packaged model is read: the models are random Llama models of two shapes, saved
to a working directory and loaded from there as any local checkpoint, with a word-level tokenizer built here
("w3" ... "w49151" after the pad, BOS and EOS tokens; one token per word, the models' vocabulary), so that prompts and responses have exact
token lengths. Random weights time the same as trained ones.

- ``135m``: SmolLM2-135M's shape (the packaged model's config.json): LlamaConfig hidden 576, intermediate
  1536, 30 layers, 9 heads, 3 KV heads, vocabulary 49,152, tied embeddings, RoPE theta 100,000, 8,192
  positions: 134.5M parameters.
- ``1b``: Llama-3.2-1B's shape with SmolLM2's vocabulary: hidden 2048, intermediate 8192, 16 layers,
  32 heads, 8 KV heads, vocabulary 49,152, tied embeddings, RoPE theta 500,000: 1.07B parameters.

Parts, each timed and wrapped (a part that fails records its error and the next one runs), each writing the
summary so far to ``--out`` as soon as it ends (a run cut off still reports). They run in the order
dpo_135m, rl, sampling, kl, dpo_1b, trl_dpo: the most expensive last, so that a run cut off loses it first.

1. ``dpo_135m``, ``dpo_1b``: the preference recipe (``RECIPES.get("preference").main``), loss DPO,
   ``model.dtype: auto`` (bf16 autocast on a GPU that has it, fp32 on a CPU), on random pairs of
   ``--prompt-tokens`` + 2 x ``--response-tokens`` tokens: the median optimiser step after the first
   (warm-up) step, tokens/s (the loop's ``tokens``: prompt + both responses), the reference pass,
   peak GPU memory (``torch.cuda.max_memory_allocated``; null on a CPU, where peak RSS is given);
2. ``trl_dpo``: TRL's DPOTrainer on the same pairs and batch, only when ``trl`` and ``datasets`` import
   (otherwise "trl not installed");
3. ``rl``: the rl recipe (RLOO, random scorer) on the 135m model, 2 iterations of 8 prompts x 4 samples x
   48 tokens: the second iteration's sampling, scoring, reference and update seconds;
4. ``sampling``: ``rollout.decode`` on the 135m model, ``--prompts`` x ``--samples`` x ``--new-tokens``
   (fp32 weights, no autocast, as ``rollout.sample`` runs it; on a GPU also under bf16 autocast);
5. ``kl``: the evaluation's KL pass (``recipes.evaluate.sequence_kls``) on those samples (random token ids
   when the sampling part did not run), with the device its models computed on.

On a GPU machine, from the source tree, once per device session (sized for 4 minutes on one H100; no part
starts after ``--budget-s`` 210 s; about 7 GB of disk under a temporary folder, removed at the end):

    PYTHONPATH=src python bench/gpu_check.py --out gpu_check.json

The image this is written for has Python 3.12, PyTorch 2.11, transformers 5.17, peft, accelerate,
scikit-learn and sentence-transformers. The parts import nothing it lacks (datasets, gguf, vaderSentiment, pyphen, pyarrow, matplotlib, TRL and
vLLM are not needed), so nothing has to be installed there. Should a small pure-Python package turn out to be
missing, carry its wheel with the source tree and install it first, with no network:
``pip install --no-deps --no-index wheels/<package>.whl``.
On a CPU, ``--tiny`` runs every part on tiny shapes in seconds (tests/test_gpu_check.py does).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import json
import os
import platform
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

SIZES = {
    # SmolLM2-135M (HuggingFaceTB/SmolLM2-135M's config.json; the packaged Instruct model has the same)
    "135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                 num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True, rope_theta=100000.0,
                 max_position_embeddings=8192, rms_norm_eps=1e-5),
    # Llama-3.2-1B's body with SmolLM2's vocabulary
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=49152, tie_word_embeddings=True, rope_theta=500000.0,
               max_position_embeddings=8192, rms_norm_eps=1e-5),
}
TINY_SIZES = {
    "135m": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=512, tie_word_embeddings=True, rope_theta=100000.0,
                 max_position_embeddings=512),
    "1b": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, vocab_size=512, tie_word_embeddings=True, rope_theta=500000.0,
               max_position_embeddings=512),
}
PARTS = ("dpo_135m", "dpo_1b", "trl_dpo", "rl", "sampling", "kl")
SPECIALS = ["<pad>", "<|im_start|>", "<|im_end|>"]  # ids 0, 1, 2: pad, BOS, EOS
FAIL_ENV = "GPU_CHECK_FAIL"  # a part's name: that part raises at its start (tests/test_gpu_check.py)


class InjectedFailure(RuntimeError):
    pass


# -- models and data -------------------------------------------------------------------------------------------

def word_tokenizer(vocab_size: int):
    """A word-level tokenizer of ``vocab_size`` entries: the specials, then "w3" ... "w{vocab_size - 1}", split
    on whitespace; a text of k such words is k tokens, and every id the model can sample decodes to a word."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from shiftalign.models.tiny import CHAT_TEMPLATE

    vocab = {s: i for i, s in enumerate(SPECIALS)}
    vocab.update({f"w{i}": i for i in range(len(SPECIALS), vocab_size)})
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", bos_token="<|im_start|>",
                                  eos_token="<|im_end|>")
    tok.chat_template = CHAT_TEMPLATE
    return tok


def build_model(size: str, shape: dict, directory: Path, device: torch.device) -> dict:
    """A random Llama model of ``shape`` and the word tokenizer, saved (bf16 safetensors) to ``directory``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    t0 = time.perf_counter()
    shape = dict(shape)
    theta = shape.pop("rope_theta")
    cfg = LlamaConfig(**shape, rope_parameters={"rope_type": "default", "rope_theta": theta},
                      pad_token_id=0, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    with torch.device(device):  # initialised on the GPU when there is one: a 1B model's init is slow on a CPU
        model = LlamaForCausalLM(cfg)
    params = sum(p.numel() for p in model.parameters())  # tied embeddings counted once
    model.to(torch.bfloat16).save_pretrained(directory, safe_serialization=True)
    word_tokenizer(shape["vocab_size"]).save_pretrained(directory)
    del model
    free_memory()
    return {"shape": {**shape, "rope_theta": theta}, "parameters": params, "build_seconds": time.perf_counter() - t0}


def words(rng, n: int, vocab_size: int) -> str:
    return " ".join(f"w{rng.randrange(len(SPECIALS), vocab_size)}" for _ in range(n))


def write_pairs(path: Path, n: int, prompt_tokens: int, response_tokens: int, vocab_size: int, seed: int) -> Path:
    rng = random.Random(seed)
    rows = [{"id": f"p{i}", "prompt": words(rng, prompt_tokens, vocab_size),
             "chosen": words(rng, response_tokens, vocab_size), "rejected": words(rng, response_tokens, vocab_size)}
            for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def peak_memory() -> dict:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        return {"peak_gpu_memory_gb": torch.cuda.max_memory_allocated() / 2**30}
    return {"peak_gpu_memory_gb": None,
            "peak_rss_gb_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


# -- the parts ---------------------------------------------------------------------------------------------------

def part_dpo(ctx: dict, size: str) -> dict:
    from shiftalign.config import RunConfig, from_dict
    from shiftalign.models.load import mixed_precision
    from shiftalign.recipes import RECIPES
    from shiftalign.train import reference

    a, work = ctx["args"], ctx["work"]
    model_dir = ctx["model"](size)
    steps = a.dpo_steps
    data = write_pairs(work / f"pairs_{size}.jsonl", a.dpo_batch * steps, a.prompt_tokens, a.response_tokens,
                       ctx["shapes"][size]["vocab_size"], seed=1)
    cfg = from_dict(RunConfig, {
        "recipe": "preference", "output_dir": str(work / f"dpo_{size}"), "cache_dir": str(work / "refcache"),
        "model": {"path": str(model_dir), "dtype": "auto"},
        "data": {"train": str(data), "max_length": a.prompt_tokens + a.response_tokens + 1,
                 "max_prompt_length": a.prompt_tokens},
        "loss": {"name": "dpo", "beta": 0.1},
        "train": {"batch_size": a.dpo_batch, "micro_batch_size": a.dpo_batch, "lr": 5e-7, "max_steps": steps,
                  "progress": False, "reference_batch_size": a.dpo_batch}})
    ref_time = {"s": 0.0}
    orig = reference.compute_logps

    def timed(*args, **kw):
        t0 = time.perf_counter()
        out = orig(*args, **kw)
        ref_time["s"] += time.perf_counter() - t0
        return out

    reset_peak()
    reference.compute_logps = timed
    try:
        t0 = time.perf_counter()
        RECIPES.get("preference").main(cfg)
        wall = time.perf_counter() - t0
    finally:
        reference.compute_logps = orig
    recs = [json.loads(line) for line in (work / f"dpo_{size}" / "metrics.jsonl").read_text().splitlines()]
    recs = [r for r in recs if "step_time" in r]
    steady = recs[1:] or recs  # the first step pays for warm-up (kernels, allocator)
    step = statistics.median(r["step_time"] for r in steady)
    tokens = statistics.median(r["tokens"] for r in steady)
    res = {"precision": mixed_precision(cfg.model), "batch": a.dpo_batch,
           "tokens_per_pair": a.prompt_tokens + 2 * (a.response_tokens + 1), "steps": len(recs),
           "steps_measured": len(steady), "step_times": [r["step_time"] for r in recs], "median_step_seconds": step,
           "tokens_per_step": tokens, "tokens_per_s": tokens / step, "reference_seconds": ref_time["s"],
           "recipe_seconds": wall, "losses": [r["loss"] for r in recs], **peak_memory()}
    shutil.rmtree(work / f"dpo_{size}", ignore_errors=True)  # a 1B model's final weights: 4 GB
    return res


def part_trl(ctx: dict) -> dict:
    """TRL's DPOTrainer on the 135m model, the same pairs and batch; only where trl and datasets import."""
    for m in ("trl", "datasets"):  # TRL's trainer reads a datasets.Dataset
        if importlib.util.find_spec(m) is None:
            return {"skipped": f"{m} not installed"}
    if ctx["args"].no_trl:
        return {"skipped": "--no-trl"}
    import datasets
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    a, work = ctx["args"], ctx["work"]
    model_dir = ctx["model"]("135m")
    data = work / "pairs_135m.jsonl"
    if not data.exists():
        write_pairs(data, a.dpo_batch * a.dpo_steps, a.prompt_tokens, a.response_tokens,
                    ctx["shapes"]["135m"]["vocab_size"], seed=1)
    times, t0 = [], {}

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            t0["t"] = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0["t"])

    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    reset_peak()
    args = DPOConfig(output_dir=str(work / "trl"), per_device_train_batch_size=a.dpo_batch, max_steps=a.dpo_steps,
                     learning_rate=5e-7, beta=0.1, report_to=[], use_cpu=not cuda, logging_steps=1,
                     save_strategy="no", max_length=a.prompt_tokens + a.response_tokens + 1, bf16=bf16,
                     gradient_checkpointing=False, dataloader_num_workers=0)
    ds = datasets.load_dataset("json", data_files=str(data), split="train").remove_columns(["id"])
    trainer = DPOTrainer(model=str(model_dir), args=args, train_dataset=ds, callbacks=[Clock()])
    trainer.train()
    steady = times[1:] or times
    step = statistics.median(steady)
    del trainer
    shutil.rmtree(work / "trl", ignore_errors=True)
    return {"precision": "bf16" if bf16 else "no", "step_times": times, "median_step_seconds": step,
            "tokens_per_s": a.dpo_batch * (a.prompt_tokens + 2 * (a.response_tokens + 1)) / step,
            "note": "TRL runs the prompt once per response and the reference inside each step", **peak_memory()}


def part_rl(ctx: dict) -> dict:
    from shiftalign.config import from_dict
    from shiftalign.recipes import RECIPES
    from shiftalign.train.rl_config import RLConfig

    a, work = ctx["args"], ctx["work"]
    model_dir = ctx["model"]("135m")
    prompts = work / "rl_prompts.jsonl"
    rng = random.Random(2)
    vocab = ctx["shapes"]["135m"]["vocab_size"]
    n_prompts = a.rl_prompts * a.rl_iterations
    prompts.write_text("".join(json.dumps({"id": f"r{i}", "prompt": words(rng, a.prompt_tokens // 2, vocab)}) + "\n"
                               for i in range(n_prompts)))
    out = work / "rl"
    cfg = from_dict(RLConfig, {
        "output_dir": str(out), "model": {"path": str(model_dir), "dtype": "auto"}, "prompts": str(prompts),
        "algorithm": {"name": "rloo"}, "scorer": {"name": "random"},
        "sampling": {"n": a.rl_samples, "max_new_tokens": a.new_tokens, "temperature": 1.0},
        "prompts_per_iteration": a.rl_prompts, "iterations": a.rl_iterations, "epochs_per_rollout": 1,
        "minibatch_size": a.rl_prompts * a.rl_samples // 2 or 1, "kl": {"coef": 0.05},
        "train": {"lr": 1e-6, "save_every": 0, "progress": False}})
    reset_peak()
    t0 = time.perf_counter()
    RECIPES.get("rl").main(cfg)
    wall = time.perf_counter() - t0
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    keys = ("time_sample", "time_score", "time_reference", "time_update")
    later = recs[1:] or recs
    iteration = statistics.median(sum(r[k] for k in keys) for r in later)
    ctx["rl_model"] = out / "model"
    return {"iterations": len(recs), "iterations_measured": len(later), "prompts_per_iteration": a.rl_prompts,
            "samples_per_prompt": a.rl_samples, "max_new_tokens": a.new_tokens,
            "median_iteration_seconds": iteration, **{k: statistics.median(r[k] for r in later) for k in keys},
            "recipe_seconds": wall, **peak_memory()}


def part_sampling(ctx: dict) -> dict:
    from shiftalign.config import ModelConfig
    from shiftalign.data.text import encode
    from shiftalign.models.load import load_policy, process_device
    from shiftalign.rollout.decode import decode
    from shiftalign.rollout.params import SamplingParams

    a = ctx["args"]
    model_dir = ctx["model"]("135m")
    device = process_device()
    model, tok = load_policy(ModelConfig(path=str(model_dir)))
    model.eval().to(device)
    rng = random.Random(3)
    vocab = ctx["shapes"]["135m"]["vocab_size"]
    texts = [words(rng, rng.randint(a.prompt_tokens // 4, a.prompt_tokens // 2), vocab) for _ in range(a.prompts)]
    ids = [encode(tok, t) for t in texts]
    p = SamplingParams(n=a.samples, max_new_tokens=a.new_tokens, temperature=0.7)

    def timed(autocast: bool) -> tuple[float, list]:
        with torch.autocast("cuda", dtype=torch.bfloat16) if autocast else contextlib.nullcontext():
            decode(model, ids[:2], SamplingParams(n=1, max_new_tokens=4), 0, tok.pad_token_id, tok.eos_token_id)
            t0 = time.perf_counter()
            out = decode(model, ids, p, 0, tok.pad_token_id, tok.eos_token_id)  # ends with .cpu(): synchronised
            return time.perf_counter() - t0, out

    reset_peak()
    seconds, gens = timed(False)
    tokens = sum(len(s["completion_ids"]) for g in gens for s in g)
    res = {"device": str(device), "precision": "fp32 weights, no autocast (as rollout.sample runs it)",
           "prompts": a.prompts, "samples_per_prompt": a.samples, "max_new_tokens": a.new_tokens,
           "batch_sequences": a.prompts * a.samples, "seconds": seconds, "tokens": tokens,
           "tokens_per_s": tokens / seconds, **peak_memory()}
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        bf_seconds, bf_gens = timed(True)
        bf_tokens = sum(len(s["completion_ids"]) for g in bf_gens for s in g)
        res["bf16_autocast"] = {"seconds": bf_seconds, "tokens": bf_tokens, "tokens_per_s": bf_tokens / bf_seconds}
    ctx["samples"] = [{"id": f"s{i}-{j}", "prompt_id": f"q{i}", "prompt": texts[i],
                       "completion_ids": s["completion_ids"]} for i, g in enumerate(gens) for j, s in enumerate(g)]
    return res


def part_kl(ctx: dict) -> dict:
    from shiftalign.recipes import evaluate

    a = ctx["args"]
    base = ctx["model"]("135m")
    policy = ctx.get("rl_model") if ctx.get("rl_model") and Path(ctx["rl_model"]).is_dir() else base
    rows, source = ctx.get("samples"), "the sampling part's samples"
    if not rows:  # the sampling part did not run: random completions of the same shape
        rng, vocab = random.Random(4), ctx["shapes"]["135m"]["vocab_size"]
        rows = [{"id": f"s{i}-{j}", "prompt_id": f"q{i}", "prompt": words(rng, a.prompt_tokens // 2, vocab),
                 "completion_ids": [rng.randrange(len(SPECIALS), vocab) for _ in range(a.new_tokens)]}
                for i in range(a.prompts) for j in range(a.samples)]
        source = "random token ids (no samples from the sampling part)"
    loaded = []
    orig = evaluate.load_policy

    def load_and_keep(*args, **kw):
        out = orig(*args, **kw)
        loaded.append(out[0])
        return out

    evaluate.load_policy = load_and_keep  # to read which device the pass computed on
    reset_peak()
    try:
        t0 = time.perf_counter()
        kls = evaluate.sequence_kls(str(policy), str(base), rows, False, 0.7)
        seconds = time.perf_counter() - t0
    finally:
        evaluate.load_policy = orig
    devices = sorted({str(next(m.parameters()).device) for m in loaded})
    tokens = sum(len(r["completion_ids"]) for r in rows)
    return {"samples": len(rows), "source": source, "policy": "the rl part's model" if policy != base else "base",
            "response_tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
            "computed_on": devices, "mean_kl": float(kls.mean()), **peak_memory()}


# -- the driver --------------------------------------------------------------------------------------------------

def write_summary(path: Path | None, summary: dict) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(tmp, path)


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="PYTHONPATH=src python bench/gpu_check.py --out gpu_check.json")
    ap.add_argument("--out", type=Path, default=None, help="the JSON summary, rewritten after every part")
    ap.add_argument("--tiny", action="store_true", help="tiny shapes and sizes: every part in seconds on a CPU")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    ap.add_argument("--dpo-batch", type=int, default=None, help="pairs per optimiser step (16; tiny 4)")
    ap.add_argument("--dpo-steps", type=int, default=None, help="optimiser steps, the first a warm-up (5; tiny 2)")
    ap.add_argument("--prompt-tokens", type=int, default=None, help="DPO prompt length (128; tiny 8)")
    ap.add_argument("--response-tokens", type=int, default=None, help="DPO response length, EOS aside (128; tiny 8)")
    ap.add_argument("--rl-prompts", type=int, default=None, help="RL prompts per iteration (8; tiny 2)")
    ap.add_argument("--rl-samples", type=int, default=None, help="RL samples per prompt (4; tiny 2)")
    ap.add_argument("--rl-iterations", type=int, default=None, help="RL iterations, the first a warm-up (2)")
    ap.add_argument("--prompts", type=int, default=None, help="sampling: prompts (64; tiny 4)")
    ap.add_argument("--samples", type=int, default=None, help="sampling: samples per prompt (4; tiny 2)")
    ap.add_argument("--new-tokens", type=int, default=None, help="sampling and RL: new tokens (48; tiny 6)")
    ap.add_argument("--no-trl", action="store_true", help="skip TRL even when it is installed")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="start no part after this many seconds (210; tiny: none), so the run ends in ~4 minutes")
    ap.add_argument("--workdir", type=Path, default=None, help="models and runs (default: a temporary folder, "
                    "removed at the end)")
    a = ap.parse_args(argv)
    full = dict(dpo_batch=16, dpo_steps=5, prompt_tokens=128, response_tokens=128, rl_prompts=8, rl_samples=4,
                rl_iterations=2, prompts=64, samples=4, new_tokens=48, budget_s=210.0)
    tiny = dict(dpo_batch=4, dpo_steps=2, prompt_tokens=8, response_tokens=8, rl_prompts=2, rl_samples=2,
                rl_iterations=2, prompts=4, samples=2, new_tokens=6, budget_s=0.0)
    for k, v in (tiny if a.tiny else full).items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    unknown = set(a.parts.split(",")) - set(PARTS)
    if unknown:
        ap.error(f"--parts: unknown {', '.join(sorted(unknown))}; expected some of {', '.join(PARTS)}")
    return a


def main(argv: list[str] | None = None) -> dict:
    start = time.perf_counter()
    a = parse(argv)
    import transformers

    cuda = torch.cuda.is_available()
    shapes = TINY_SIZES if a.tiny else SIZES
    own_work = a.workdir is None
    work = Path(tempfile.mkdtemp(prefix="gpu-check-")) if own_work else a.workdir
    work.mkdir(parents=True, exist_ok=True)
    summary = {
        "device": torch.cuda.get_device_name(0) if cuda else f"cpu ({platform.processor() or platform.machine()})",
        "cuda": cuda, "bf16": bool(cuda and torch.cuda.is_bf16_supported()), "torch": torch.__version__,
        "transformers": transformers.__version__, "python": platform.python_version(), "cpus": os.cpu_count(),
        "tiny": a.tiny, "settings": {k: v for k, v in vars(a).items() if k not in ("out", "workdir")},
        "models": {}, "parts": {}, "total_seconds": None}
    models: dict[str, Path] = {}
    device = torch.device("cuda") if cuda else torch.device("cpu")

    def model(size: str) -> Path:
        if size not in models:
            d = work / f"model_{size}"
            summary["models"][size] = build_model(size, shapes[size], d, device)
            models[size] = d
        return models[size]

    ctx = {"args": a, "work": work, "shapes": shapes, "model": model}
    runners = {"dpo_135m": lambda: part_dpo(ctx, "135m"), "dpo_1b": lambda: part_dpo(ctx, "1b"),
               "trl_dpo": lambda: part_trl(ctx), "rl": lambda: part_rl(ctx), "sampling": lambda: part_sampling(ctx),
               "kl": lambda: part_kl(ctx)}
    # The 1B model last but TRL: what a cut-off run loses first is the most expensive part.
    order = ["dpo_135m", "rl", "sampling", "kl", "dpo_1b", "trl_dpo"]
    chosen = a.parts.split(",")
    fail = os.environ.get(FAIL_ENV, "")
    try:
        for name in [p for p in order if p in chosen]:
            elapsed = time.perf_counter() - start
            if a.budget_s and elapsed > a.budget_s:
                summary["parts"][name] = {"skipped": f"time budget: {elapsed:.0f} s > --budget-s {a.budget_s:.0f}"}
                write_summary(a.out, summary)
                continue
            print(f"gpu_check: {name} ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            try:
                if name == fail:
                    raise InjectedFailure(f"failure injected into {name} by {FAIL_ENV}")
                res = runners[name]()
            except Exception as e:  # one part's failure is recorded; the next part still runs
                res = {"error": f"{type(e).__name__}: {e}",
                       "traceback": traceback.format_exc(limit=-6).splitlines()[-12:]}
            res["seconds_total"] = time.perf_counter() - t0
            summary["parts"][name] = res
            summary["total_seconds"] = time.perf_counter() - start
            write_summary(a.out, summary)
            state = "error: " + res["error"] if "error" in res else f"ok in {res['seconds_total']:.1f} s"
            print(f"gpu_check: {name} {state}", file=sys.stderr, flush=True)
            free_memory()
    finally:
        if own_work:
            shutil.rmtree(work, ignore_errors=True)
    summary["total_seconds"] = time.perf_counter() - start
    write_summary(a.out, summary)
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here is downloaded; fail fast if something tries
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    main()
