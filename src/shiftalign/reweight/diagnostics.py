"""Weight diagnostics: effective sample size, largest-weight share, domain-classifier AUC.

- ESS / N = (sum w)^2 / (N sum w^2)  (Kish, 1965): 1 for uniform weights, 1/N when one weight dominates.
  Below 0.1 the weighted loss rests on a few examples: a loud warning.
- largest share = max w / sum w.
- domain AUC: a cross-fitted logistic classifier of target against source, scored by ROC AUC with
  the source rows weighted; 0.5 means the weighted source is indistinguishable from the target
  (along what a linear classifier on these features can see). Reported unweighted and weighted.
"""

from __future__ import annotations

import warnings

import numpy as np

LOW_ESS = 0.1


def ess_fraction(w: np.ndarray) -> float:
    w = np.asarray(w, np.float64)
    s2 = float((w * w).sum())
    return float(w.sum() ** 2 / (len(w) * s2)) if s2 > 0 else 0.0


def largest_share(w: np.ndarray) -> float:
    s = float(np.sum(w))
    return float(np.max(w) / s) if s > 0 else 1.0


def domain_auc(Xs: np.ndarray, Xt: np.ndarray, ws: np.ndarray | None = None, folds: int = 5, seed: int = 0) -> float:
    """Out-of-fold ROC AUC of a logistic target-vs-source classifier; source rows weighted by ``ws``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = np.concatenate([Xs, Xt])
    y = np.r_[np.zeros(len(Xs)), np.ones(len(Xt))]
    sw = np.r_[np.ones(len(Xs)) if ws is None else ws / np.mean(ws), np.ones(len(Xt))]
    score = np.empty(len(X))
    folds = max(2, min(folds, len(Xs), len(Xt)))
    for train, held in StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y):
        m = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
        m.fit(X[train], y[train], logisticregression__sample_weight=sw[train])
        score[held] = m.predict_proba(X[held])[:, 1]
    return float(roc_auc_score(y, score, sample_weight=sw))


def summarize(raw: np.ndarray, final: np.ndarray, Xs=None, Xt=None) -> dict:
    d = {"n": int(len(final)), "ess_fraction_raw": ess_fraction(raw), "ess_fraction": ess_fraction(final),
         "largest_share": largest_share(final), "weight_min": float(np.min(final)), "weight_max": float(np.max(final)),
         "weight_mean": float(np.mean(final)),
         "weight_quantiles": {str(q): float(np.quantile(final, q)) for q in (0.01, 0.1, 0.5, 0.9, 0.99)}}
    if Xs is not None and Xt is not None:
        d["domain_auc_before"] = domain_auc(Xs, Xt)
        d["domain_auc_after"] = domain_auc(Xs, Xt, final)
    if d["ess_fraction"] < LOW_ESS:
        msg = (f"effective sample size is {d['ess_fraction']:.3f} of N (< {LOW_ESS}): the weighted loss rests on "
               f"a few examples; temper or clip the weights, or check that source and target overlap")
        d["warning"] = msg
        warnings.warn(msg, stacklevel=2)
    return d
