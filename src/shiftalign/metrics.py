"""Evaluation metrics: how often a scorer orders pairs of responses the way the labels do.

One module for the accuracies that evaluation, the reward-heads fit and the experiment's reward-model
diagnostics report, so that "accuracy" means one computation everywhere: a pair whose two scores tie
counts 1/2 (a scorer that cannot tell two responses apart is right half the time).

- :func:`pair_accuracy`: scores against gold on pairs of responses to the same prompt (on-policy pairs:
  every two samples, or best against worst), the pairs whose gold scores tie left out;
- :func:`chosen_accuracy`: scores of labelled (chosen, rejected) pairs, the share ordered as labelled.
"""

from __future__ import annotations

import numpy as np


def pair_accuracy(scores: np.ndarray, gold: np.ndarray, groups: list[str],
                  pairs: str = "all") -> tuple[float | None, int]:
    """Share of within-group pairs with different gold that ``scores`` order like gold (ties 1/2).
    ``pairs``: ``all`` pairs of a group, or ``best_vs_worst``: only its highest- against its
    lowest-gold member (how best-vs-worst preference data is built)."""
    if pairs not in ("all", "best_vs_worst"):
        raise ValueError(f"pairs: expected all or best_vs_worst, got {pairs!r}")
    by: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        by.setdefault(g, []).append(i)
    hits, n = 0.0, 0
    for idx in by.values():
        if pairs == "best_vs_worst":
            idx = [max(idx, key=lambda i: gold[i]), min(idx, key=lambda i: gold[i])]
        for a in range(len(idx)):
            for b in range(a + 1, len(idx)):
                i, j = idx[a], idx[b]
                if gold[i] == gold[j]:
                    continue
                n += 1
                hits += 0.5 if scores[i] == scores[j] else float((scores[i] > scores[j]) == (gold[i] > gold[j]))
    return (hits / n if n else None), n


def chosen_accuracy(chosen_scores: np.ndarray, rejected_scores: np.ndarray) -> float:
    """Fraction of pairs whose chosen response scores higher than its rejected one (ties count half)."""
    d = np.asarray(chosen_scores) - np.asarray(rejected_scores)
    return float(np.mean((d > 0) + 0.5 * (d == 0)))
