"""Where the time of evaluating one policy goes, at the default profile's size: 64 held-out prompts x 4
samples x 48 new tokens of the packaged 135M model (``recipes.evaluate``'s parts, each timed alone).

    SHIFTALIGN_CACHE=runs/cache .venv/bin/python bench/evaluation_time.py [--reward-model DIR] [--out FILE]

Two ways of reading the KL, timed in the same run on the same samples:
- ``two_pass``: sampling (the decode loop), then the KL pass of ``sequence_kls`` (policy and baseline forwards
  with full-vocabulary logits at the response positions, both models loaded), what other backends use;
- ``during_sampling``: the decode loop keeping the logits its tokens were drawn from, and one forward of the
  baseline per batch (``rollout.kl``), what ``evaluate`` does with the decode backend.
Both draw the same samples (per-prompt seeds) and their KLs agree; the script checks both. Also timed: the gold
scorer (VADER) and, with ``--reward-model``, the reward model's accuracy on the samples. The policy and the
baseline are both the packaged model here: the passes cost the same whatever the weights. Prints one JSON
object; writes it to ``--out`` too.
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
        times["two_pass.sampling"] = time.perf_counter() - t0
        rows = sorted(read_jsonl(sc.output), key=lambda r: (r["prompt_id"], r["id"]))
        t0 = time.perf_counter()
        two_pass = sequence_kls(model, model, rows, True, sampling.temperature)
        times["two_pass.kl_pass"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        sc = SampleConfig(prompts=PROMPTS, output=str(Path(tmp) / "with_kl.jsonl"), policy=ModelConfig(path=model),
                          sampling=sampling, wrap_text_as_chat=True, progress=False, kl_to=model)
        sample_main(sc)
        times["during_sampling.sampling_and_kl"] = time.perf_counter() - t0
        with_kl = sorted(read_jsonl(sc.output), key=lambda r: (r["prompt_id"], r["id"]))
        assert [r["completion_ids"] for r in with_kl] == [r["completion_ids"] for r in rows]
        kl_gap = float(np.abs(np.array([r["kl"] for r in with_kl]) - two_pass).max())
        t0 = time.perf_counter()
        gold = np.array(make_scorer({"name": "vader"})([r["prompt"] for r in rows], [r["completion"] for r in rows]))
        times["gold"] = time.perf_counter() - t0
        if args.reward_model:
            t0 = time.perf_counter()
            rm_accuracy(EvaluateConfig(reward_model=args.reward_model, wrap_text_as_chat=True), rows, gold)
            times["reward_model_accuracy"] = time.perf_counter() - t0
    tokens = sum(len(r["completion_ids"]) for r in rows)
    shared = sum(v for k, v in times.items() if "." not in k)
    totals = {way: round(shared + sum(v for k, v in times.items() if k.startswith(way + ".")), 2)
              for way in ("two_pass", "during_sampling")}
    result = {"samples": len(rows), "response_tokens": tokens, "seconds": {k: round(v, 2) for k, v in times.items()},
              "total_seconds": totals, "max_kl_difference": kl_gap}
    print(json.dumps(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
