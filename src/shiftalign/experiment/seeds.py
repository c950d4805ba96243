"""Arms trained with several seeds: intervals over prompts and seeds together.

An arm with ``seeds: S`` is trained S times (seed offsets 0..S-1: data order, sampling and labelling
of later rounds, estimator folds); each replicate is evaluated on the same held-out prompts. For a
difference between arm A (S_A replicates) and baseline B (S_B), with per-replicate, per-prompt gold
means g_A[s, p] and g_B[s, p], the point estimate is mean(g_A) - mean(g_B) and its 95 % interval a
two-level percentile bootstrap (Davison & Hinkley, 1997, Sec. 3.8: resample the top level, then
within it): each draw resamples the prompts (shared by both arms: the comparison stays paired) and,
independently, each arm's replicates. With one replicate per arm it is the paired prompt bootstrap.
The seed-to-seed spread is the standard deviation over replicates of their mean gold reward. With
several method arms, :func:`simultaneous_intervals` gives intervals that hold for all of them at once.
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


def simultaneous_intervals(arms: dict[str, np.ndarray], base: np.ndarray, n: int, seed: int,
                           level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Intervals for every arm's difference to the baseline that hold *together* with probability
    ``level`` (family-wise), for reading the best of several arms without the winner's curse: the
    single-step max-|t| bootstrap (Romano & Wolf, 2005, "Exact and approximate stepdown methods for
    multiple hypothesis testing", Sec. 4). Each draw resamples the prompts once for all arms and the
    baseline (the comparisons stay paired) and each arm's replicates independently, as
    :func:`two_level_bootstrap` does; with sd_k the bootstrap standard deviation of arm k's difference,
    the critical value c is the ``level`` quantile over draws of max_k |d*_k - d_k| / sd_k, and arm k's
    interval is d_k ± c sd_k. ``arms``: name -> (replicates, prompts) array; ``base``: (replicates, prompts)."""
    b = np.atleast_2d(np.asarray(base, np.float64))
    arrays = {k: np.atleast_2d(np.asarray(v, np.float64)) for k, v in arms.items()}
    if not arrays:
        return {}
    names = list(arrays)
    rng = np.random.default_rng(seed)
    P = b.shape[1]
    draws = np.empty((n, len(names)))
    for i in range(n):
        p = rng.integers(0, P, P)
        base_mean = b[np.ix_(rng.integers(0, len(b), len(b)), p)].mean()
        for j, k in enumerate(names):
            a = arrays[k]
            draws[i, j] = a[np.ix_(rng.integers(0, len(a), len(a)), p)].mean() - base_mean
    point = np.array([arrays[k].mean() - b.mean() for k in names])
    sd = draws.std(axis=0, ddof=1)
    live = sd > 0
    t = np.abs(draws[:, live] - point[live]) / sd[live] if live.any() else np.zeros((n, 1))
    c = float(np.quantile(t.max(axis=1), level))
    return {k: (float(point[j] - c * sd[j]), float(point[j] + c * sd[j])) for j, k in enumerate(names)}
