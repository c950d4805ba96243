"""Where an online-RL iteration's time goes: sampling, scoring, the policy and reference log-prob
passes, and the update, as the RL loop logs them (``time_sample``, ``time_score``, ``time_reference``,
``time_update`` in metrics.jsonl).

RLOO on the packaged SmolLM2-135M-Instruct with the settings of configs/rl.yaml (4 prompts x 4
samples of up to 48 tokens per iteration, 2 epochs of minibatches of 8, lr 2e-6, KL 0.05), scored by
the VADER scorer (so no reward model has to be trained first). Reports the median of each part over
iterations 2 onwards (the first one pays for warm-up) and the median iteration time.

    python bench/rl_iteration.py                        # 6 iterations, ~5 minutes on 2 cores
    python bench/rl_iteration.py --out before.json      # run it from two checkouts to compare
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

PARTS = ("time_sample", "time_score", "time_reference", "time_update")


def run(model: str, iterations: int, workdir: Path) -> dict:
    from shiftalign.config import from_dict
    from shiftalign.recipes.rl import main as rl_main
    from shiftalign.train.rl_config import RLConfig

    root = Path(__file__).resolve().parents[1]
    cfg = from_dict(RLConfig, {
        "output_dir": str(workdir / "rl"), "model": {"path": model}, "prompts": str(root / "data/quickstart/eval.jsonl"),
        "wrap_text_as_chat": True, "algorithm": {"name": "rloo"}, "scorer": {"name": "vader"},
        "sampling": {"n": 4, "max_new_tokens": 48, "temperature": 1.0}, "prompts_per_iteration": 4,
        "iterations": iterations, "epochs_per_rollout": 2, "minibatch_size": 8, "kl": {"coef": 0.05},
        "train": {"lr": 2e-6, "save_every": 0, "progress": False}})
    rl_main(cfg)
    recs = [json.loads(line) for line in (workdir / "rl" / "metrics.jsonl").read_text().splitlines()]
    later = recs[1:] or recs
    out = {p: statistics.median(r[p] for r in later) for p in PARTS}
    out["iteration"] = statistics.median(sum(r[p] for p in PARTS) for r in later)
    out["iterations_measured"] = len(later)
    out["samples_per_iteration"] = 16
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=6)
    ap.add_argument("--model", default="default")
    ap.add_argument("--out", default=None, help="write the medians as JSON here")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        res = run(args.model, args.iterations, Path(tmp))
    print(" | ".join(f"{k.removeprefix('time_')} {v:.2f} s" for k, v in res.items() if isinstance(v, float)))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    return res


if __name__ == "__main__":
    main()
