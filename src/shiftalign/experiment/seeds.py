"""Arms trained with several seeds: intervals over prompts and seeds together.

An arm with ``seeds: S`` is trained S times (seed offsets 0..S-1: data order, sampling and labelling
of later rounds, estimator folds); each replicate is evaluated on the same held-out prompts. For a
difference between arm A (S_A replicates) and baseline B (S_B), with per-replicate, per-prompt gold
means g_A[s, p] and g_B[s, p], the point estimate is mean(g_A) - mean(g_B) and its 95 % interval a
two-level percentile bootstrap (Davison & Hinkley, 1997, Sec. 3.8: resample the top level, then
within it): each draw resamples the prompts (shared by both arms: the comparison stays paired) and,
independently, each arm's replicates. With one replicate per arm it is the paired prompt bootstrap.
The seed-to-seed spread is the standard deviation over replicates of their mean gold reward. The gold
differences of the results use ``experiment.statistics`` (seed variance pooled over arms, so an arm of one
seed carries it too); this bootstrap, which leaves out the seed variance of an arm of one replicate and shrinks
it by (S - 1) / S otherwise (tests/test_statistics.py measures its coverage), now gives only the KL's interval.
"""

from __future__ import annotations

import numpy as np


def replicate_name(arm: str, k: int) -> str:
    """Replicate k of an arm: the arm's own name for k = 0, ``arm@k`` after."""
    return arm if k == 0 else f"{arm}@{k}"


def two_level_bootstrap(a: np.ndarray, b: np.ndarray, n: int, seed: int) -> tuple[float, float, float]:
    """(mean(a) - mean(b), 2.5 %, 97.5 %) for per-replicate, per-prompt arrays a (S_a, P) and b (S_b, P)."""
    a, b = np.atleast_2d(np.asarray(a, np.float64)), np.atleast_2d(np.asarray(b, np.float64))
    rng = np.random.default_rng(seed)
    P = a.shape[1]
    draws = np.empty(n)
    for i in range(n):
        p = rng.integers(0, P, P)
        sa, sb = rng.integers(0, len(a), len(a)), rng.integers(0, len(b), len(b))
        draws[i] = a[np.ix_(sa, p)].mean() - b[np.ix_(sb, p)].mean()
    return float(a.mean() - b.mean()), float(np.quantile(draws, 0.025)), float(np.quantile(draws, 0.975))


def seed_spread(a: np.ndarray) -> float | None:
    """Standard deviation over replicates of their mean (None with one replicate)."""
    a = np.atleast_2d(np.asarray(a, np.float64))
    return float(a.mean(1).std(ddof=1)) if len(a) > 1 else None
