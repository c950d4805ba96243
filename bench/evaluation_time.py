"""Where the time of evaluating one policy goes, at the default profile's size: 64 held-out prompts x 4
samples x 48 new tokens of the packaged 135M model (``recipes.evaluate``'s parts, each timed alone).

    SHIFTALIGN_CACHE=runs/cache .venv/bin/python bench/evaluation_time.py [--reward-model DIR] [--out FILE]

Parts: sampling (the decode loop), the gold scorer (VADER), the KL pass (policy and baseline forwards with
full-vocabulary logits at the response positions, both models loaded), and with ``--reward-model`` the
reward model's accuracy on the samples. The policy and the baseline are both the packaged model here: the
passes cost the same whatever the weights. Prints one JSON object; writes it to ``--out`` too.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from shiftalign.config import ModelConfig
from shiftalign.io import read_jsonl
from shiftalign.models.packaged import resolve_model_path
from shiftalign.recipes.evaluate import EvaluateConfig, rm_accuracy, sequence_kls
from shiftalign.rl.scorers import make_scorer
from shiftalign.rollout.params import SamplingParams
from shiftalign.rollout.sample import SampleConfig
from shiftalign.rollout.sample import main as sample_main

PROMPTS = "data/shift/default/target_eval_prompts.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reward-model", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    model = resolve_model_path("default")
    sampling = SamplingParams(n=4, max_new_tokens=48, temperature=0.7, seed=0)
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        sc = SampleConfig(prompts=PROMPTS, output=str(Path(tmp) / "samples.jsonl"), policy=ModelConfig(path=model),
                          sampling=sampling, wrap_text_as_chat=True, progress=False)
        sample_main(sc)
        times["sampling"] = time.perf_counter() - t0
        rows = sorted(read_jsonl(sc.output), key=lambda r: (r["prompt_id"], r["id"]))
        t0 = time.perf_counter()
        gold = np.array(make_scorer({"name": "vader"})([r["prompt"] for r in rows], [r["completion"] for r in rows]))
        times["gold"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        sequence_kls(model, model, rows, True, sampling.temperature)
        times["kl_pass"] = time.perf_counter() - t0
        if args.reward_model:
            t0 = time.perf_counter()
            rm_accuracy(EvaluateConfig(reward_model=args.reward_model, wrap_text_as_chat=True), rows, gold)
            times["reward_model_accuracy"] = time.perf_counter() - t0
    tokens = sum(len(r["completion_ids"]) for r in rows)
    result = {"samples": len(rows), "response_tokens": tokens, "seconds": {k: round(v, 2) for k, v in times.items()},
              "total_seconds": round(sum(times.values()), 2)}
    print(json.dumps(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
