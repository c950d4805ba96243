"""Pair builders: from scored samples of one prompt to (chosen, rejected) pairs.

- ``best_vs_worst``: the highest- against the lowest-scored sample;
- ``random``: two distinct samples drawn with a seeded RNG, oriented by score;
- ``all``: every pair of samples.
Pairs whose score difference is not above ``margin`` are dropped (ties always are: a tie never
becomes a label by default ordering).
"""

from __future__ import annotations

import itertools
import random

BUILDERS = ("best_vs_worst", "random", "all")


def candidate_pairs(n: int, how: str, rng: random.Random, scores=None) -> list[tuple[int, int]]:
    """Index pairs (i, j) among n samples; with scores, best_vs_worst needs them."""
    if n < 2:
        return []
    if how == "all":
        return list(itertools.combinations(range(n), 2))
    if how == "random":
        return [tuple(rng.sample(range(n), 2))]
    if how == "best_vs_worst":
        order = sorted(range(n), key=lambda i: scores[i])
        return [(order[-1], order[0])]
    raise ValueError(f"pairs must be one of {BUILDERS}, got {how!r}")


def orient(i: int, j: int, si: float, sj: float, margin: float):
    """(chosen, rejected, difference) or None for a tie / a difference not above the margin."""
    d = si - sj
    if abs(d) <= margin or d == 0:
        return None
    return (i, j, d) if d > 0 else (j, i, -d)
