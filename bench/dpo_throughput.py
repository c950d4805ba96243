"""DPO training throughput: shiftalign vs TRL's DPOTrainer, same model, pairs, batch and machine.

Arms (each in its own process, so peak RSS is that arm's alone):
- ``shiftalign``  : the preference recipe (tree rows, cached reference log-probs), fp32;
- ``shiftalign_bf16`` : the same with ``model.dtype: bfloat16`` (bf16 autocast, fp32 weights);
- ``shiftalign_lora`` : the same, fp32, training a LoRA adapter (r 16, alpha 32, on every linear layer but
  the LM head: peft's all-linear) instead of every weight;
- ``trl_default`` : TRL's DPOTrainer as it comes (its defaults: bf16, gradient checkpointing);
- ``trl_tuned``   : TRL's DPOTrainer tuned for a CPU (fp32, no gradient checkpointing);
- ``trl_tuned_malloc`` : the same with glibc's allocator set as shiftalign sets it in its own processes
  (``shiftalign.runtime``: no fresh mmap per large block, freed memory kept for reuse), through glibc's
  environment tunables, so that the allocator's share of the difference can be read off.

Model: the packaged SmolLM2-135M-Instruct. Data: ``--steps`` x 8 plain-text pairs built below.
Reported per arm: median wall time per optimiser step with reference log-probs included (TRL
computes them inside each step; shiftalign pre-computes them once, and that time is spread over
the steps), tokens/s (prompt + response tokens of the chosen and rejected sequences), peak RSS.

    python bench/dpo_throughput.py --steps 6 --default-steps 4
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOPICS = ["water plants", "learn to juggle", "save money", "sleep better", "start running", "make tea",
          "bake bread", "plan a picnic", "study for an exam", "fix a squeaky door", "cook rice", "keep a journal",
          "pack for a trip", "care for a cat", "organise a desk", "grow basil"]


def make_pairs(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        t = TOPICS[i % len(TOPICS)]
        prompt = (f"I have a question about how to {t}. I tried a few things last week and none of them worked "
                  f"as well as I hoped. What would you suggest I do differently this time? (case {i})")
        chosen = (f"Good question. To {t}, start with one small, concrete step you can repeat every day. "
                  f"Write down what you tried and what happened, so you can see what works. Ask a friend who "
                  f"has done it before, and be patient: most people need a few weeks before it feels easy.")
        rejected = (f"Honestly, I would not bother trying to {t}. It is not worth the effort and you will "
                    f"probably give up again anyway. Just look it up somewhere else if you really care.")
        rows.append({"id": f"b{i}", "prompt": prompt, "chosen": chosen, "rejected": rejected})
    return rows


LORA = {"r": 16, "alpha": 32}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_shiftalign(data: str, steps: int, work: Path, dtype: str = "auto", lora: dict | None = None) -> dict:
    from shiftalign.config import RunConfig, from_dict
    from shiftalign.recipes import RECIPES
    from shiftalign.train import reference

    ref_time = {"s": 0.0}
    orig = reference.compute_logps

    def timed(*a, **k):
        t0 = time.perf_counter()
        out = orig(*a, **k)
        ref_time["s"] += time.perf_counter() - t0
        return out

    reference.compute_logps = timed
    cfg = from_dict(RunConfig, {
        "recipe": "preference", "output_dir": str(work / "run"), "cache_dir": str(work / "refcache"),
        "model": {"path": "default", "dtype": dtype, "lora": lora}, "data": {"train": data, "max_length": 1024, "max_prompt_length": 512},
        "loss": {"name": "dpo", "beta": 0.1},
        "train": {"batch_size": 8, "micro_batch_size": 8, "lr": 5e-7, "max_steps": steps, "progress": False,
                  "reference_batch_size": 16, "max_grad_norm": 1.0}})
    RECIPES.get("preference").main(cfg)
    recs = [json.loads(l) for l in (work / "run" / "metrics.jsonl").read_text().splitlines()]
    recs = [r for r in recs if "step_time" in r]
    return {"step_times": [r["step_time"] for r in recs], "reference_time": ref_time["s"],
            "losses": [r["loss"] for r in recs]}


def run_trl(data: str, steps: int, work: Path, tuned: bool) -> dict:
    import datasets
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from shiftalign.models.packaged import default_model_dir

    times, losses, t0 = [], [], {}

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            t0["t"] = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter() - t0["t"])

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                losses.append(logs["loss"])

    kw = dict(bf16=False, gradient_checkpointing=False) if tuned else {}
    args = DPOConfig(output_dir=str(work / "trl"), per_device_train_batch_size=8, max_steps=steps, learning_rate=5e-7,
                     beta=0.1, report_to=[], use_cpu=True, logging_steps=1, save_strategy="no", max_length=1024,
                     dataloader_num_workers=0, **kw)
    ds = datasets.load_dataset("json", data_files=data, split="train").remove_columns(["id"])
    trainer = DPOTrainer(model=str(default_model_dir()), args=args, train_dataset=ds, callbacks=[Clock()])
    trainer.train()
    return {"step_times": times, "reference_time": 0.0, "losses": losses,
            "bf16": bool(trainer.args.bf16), "gradient_checkpointing": bool(trainer.args.gradient_checkpointing)}


def count_tokens(data: str) -> float:
    """Prompt + response tokens of chosen and rejected sequences, EOS included, per 8-pair step."""
    from shiftalign.data.load import load_examples
    from shiftalign.data.tokenize import tokenize_examples
    from shiftalign.models.load import load_tokenizer

    tok = load_tokenizer("default")
    items, _ = tokenize_examples(load_examples(data, "paired"), tok, 1024, 512)
    per_pair = [2 * len(it.prompt_ids) + sum(len(c) for c in it.completion_ids) for it in items]
    return sum(per_pair) / len(per_pair) * 8


def child(arm: str, data: str, steps: int) -> None:
    import torch

    work = Path(tempfile.mkdtemp(prefix=f"bench-{arm}-"))
    t0 = time.perf_counter()
    if arm.startswith("shiftalign"):
        res = run_shiftalign(data, steps, work, "bfloat16" if arm.endswith("bf16") else "auto",
                             LORA if arm.endswith("lora") else None)
    else:
        res = run_trl(data, steps, work, tuned=arm.startswith("trl_tuned"))
    res.update(arm=arm, wall=time.perf_counter() - t0, peak_rss_mb=_rss_mb(), threads=torch.get_num_threads())
    print("RESULT " + json.dumps(res), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6, help="optimiser steps for shiftalign and tuned TRL")
    ap.add_argument("--default-steps", type=int, default=4, help="steps for TRL as it comes")
    ap.add_argument("--arms", default="shiftalign,shiftalign_bf16,shiftalign_lora,trl_tuned,trl_tuned_malloc,trl_default")
    ap.add_argument("--out", default="bench/results/dpo_throughput.json")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a.child, a.data, a.steps)

    work = Path(tempfile.mkdtemp(prefix="bench-dpo-"))
    data = work / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in make_pairs(8 * max(a.steps, a.default_steps))))
    tokens = count_tokens(str(data))
    results = {}
    for arm in a.arms.split(","):
        steps = a.default_steps if arm == "trl_default" else a.steps
        env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
        if arm == "trl_tuned_malloc":  # shiftalign.runtime's mallopt calls, as glibc's environment tunables
            env.update(MALLOC_MMAP_MAX_="0", MALLOC_TRIM_THRESHOLD_=str(2**31 - 1))
        proc = subprocess.run([sys.executable, __file__, "--child", arm, "--data", str(data), "--steps", str(steps)],
                              capture_output=True, text=True, env=env)
        line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
        if proc.returncode or not line:
            print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
            raise SystemExit(f"arm {arm} failed")
        r = json.loads(line[0][7:])
        # Step 1 pays one-off warm-up costs in every arm; the median is over the remaining steps when there are any.
        steady = r["step_times"][1:] or r["step_times"]
        r["median_step"] = statistics.median(steady)
        r["step_with_reference"] = r["median_step"] + r["reference_time"] / len(r["step_times"])
        r["tokens_per_s"] = tokens / r["step_with_reference"]
        results[arm] = r
        print(f"{arm:16s} step {r['step_with_reference']:7.2f} s (median {r['median_step']:.2f} + reference "
              f"{r['reference_time']:.2f}/{len(r['step_times'])})  {r['tokens_per_s']:7.1f} tok/s  "
              f"peak RSS {r['peak_rss_mb']:.0f} MB  first loss {r['losses'][0] if r['losses'] else None}", flush=True)
    base = results.get("trl_tuned")
    if base:
        for arm, r in results.items():
            r["time_ratio_vs_trl_tuned"] = r["step_with_reference"] / base["step_with_reference"]
            r["rss_ratio_vs_trl_tuned"] = r["peak_rss_mb"] / base["peak_rss_mb"]
            print(f"{arm:16s} time x{r['time_ratio_vs_trl_tuned']:.3f}  peak RSS x{r['rss_ratio_vs_trl_tuned']:.3f} "
                  f"of TRL tuned")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"tokens_per_step": tokens, "cpus": os.cpu_count(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
