"""Fit time and peak memory of each density-ratio estimator versus N, on 384-d features.

Features are synthetic 384-d Gaussians (the width of all-MiniLM-L6-v2 embeddings): N/2 source
rows from N(0, I) and N/2 target rows shifted by 0.05 per dimension. Peak memory is the peak of
Python/numpy allocations during the fit (tracemalloc), excluding the input arrays themselves.
Kernel methods run up to their caps (KMM: n_s + n_t <= 8000).

    python bench/reweight_scaling.py            # writes bench/results/reweight_scaling.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
import tracemalloc
from pathlib import Path

import numpy as np

from shiftalign.reweight import ESTIMATORS

SIZES = {
    "classifier": [1_000, 10_000, 100_000, 1_000_000],
    "ulsif": [1_000, 10_000, 100_000],
    "rulsif": [1_000, 10_000, 100_000],
    "kliep": [1_000, 10_000, 100_000],
    "kmm": [1_000, 2_000, 4_000, 8_000],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench/results/reweight_scaling.json")
    ap.add_argument("--estimators", default=",".join(SIZES))
    ap.add_argument("--max-n", type=int, default=1_000_000)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    results = []
    for name in a.estimators.split(","):
        spec = ESTIMATORS.get(name)
        spec.fit(rng.normal(size=(50, 4)), rng.normal(size=(50, 4)), spec.params())  # warm-up: imports
        for n in [n for n in SIZES[name] if n <= a.max_n]:
            Xs = rng.normal(size=(n // 2, 384)).astype(np.float32)
            Xt = (rng.normal(size=(n // 2, 384)) + 0.05).astype(np.float32)
            tracemalloc.start()
            t0 = time.perf_counter()
            w, _ = spec.fit(Xs, Xt, spec.params())
            dt = time.perf_counter() - t0
            peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
            results.append({"estimator": name, "n": n, "seconds": dt, "peak_mb": peak})
            print(f"{name:10s} N={n:>9,d}  {dt:8.2f} s  peak {peak:9.1f} MB", flush=True)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cpus": os.cpu_count(), "dim": 384, "results": results}, indent=2))


if __name__ == "__main__":
    main()
