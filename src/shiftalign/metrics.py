"""Evaluation metrics: how often a scorer orders pairs of responses the way the labels do.

One module for the accuracies that evaluation, the reward-heads fit and the experiment's reward-model
diagnostics report, so that "accuracy" means one computation everywhere: a pair whose two scores tie
counts 1/2 (a scorer that cannot tell two responses apart is right half the time).

- :func:`pair_accuracy`: scores against gold on pairs of responses to the same prompt (on-policy pairs:
  every two samples, or best against worst), the pairs whose gold scores tie left out;
- :func:`chosen_accuracy`: scores of labelled (chosen, rejected) pairs, the share ordered as labelled;
- :func:`spread_auroc`: how well an ensemble's spread over its members flags its wrong labels (the AUROC of the
  spread as a score for "this label is wrong"), with a bootstrap interval over the pairs: whether the members'
  disagreement is where their errors are (Eisenstein et al., 2023, "Helping or Herding?": members that share their
  errors agree on them), which the conservative labels and rewards of Coste et al. (2024) rely on.
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


BOOTSTRAP = 1000  # resamples of the pairs for the spread AUROC's interval


def spread_auroc(spread, wrong, bootstrap: int = BOOTSTRAP, seed: int = 0) -> dict | None:
    """The AUROC of ``spread`` (n,) as a score for ``wrong`` (n,) bools (scikit-learn's ``roc_auc_score``: the
    probability that a wrong label's spread is above a right one's, a tie counting 1/2; 0.5: the spread says
    nothing, 1: it separates them), with a 95 % percentile interval from ``bootstrap`` resamples of the n pairs
    with replacement (seeded by ``seed``; a resample holding one class only has no AUROC and is left out).
    {auroc, ci95, pairs, wrong}; None unless both right and wrong labels are among the pairs."""
    from scipy.stats import rankdata
    from sklearn.metrics import roc_auc_score

    s, y = np.asarray(spread, np.float64), np.asarray(wrong, bool)
    n, n_wrong = len(y), int(y.sum())
    if s.shape != y.shape or not 0 < n_wrong < n:
        return None
    idx = np.random.default_rng(seed).integers(0, n, (bootstrap, n))
    ys = y[idx]
    pos = ys.sum(1)
    both = (pos > 0) & (pos < n)
    # Mann-Whitney with average ranks, the same number as roc_auc_score, for every resample at once
    ranks = rankdata(s[idx][both], axis=1)
    p = pos[both]
    aucs = ((ranks * ys[both]).sum(1) - p * (p + 1) / 2) / (p * (n - p))
    lo, hi = np.percentile(aucs, [2.5, 97.5]) if len(aucs) else (np.nan, np.nan)
    return {"auroc": float(roc_auc_score(y, s)), "ci95": [float(lo), float(hi)], "pairs": n, "wrong": n_wrong}
