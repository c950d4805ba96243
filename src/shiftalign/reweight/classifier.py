"""Probabilistic-classifier density ratio, cross-fitted and calibrated.

Bickel, Brückner & Scheffer, 2009, "Discriminative Learning Under Covariate Shift", Sec. 2 (and
Sugiyama et al., 2012, "Density Ratio Estimation in Machine Learning", Ch. 4): a classifier of
target (label 1) against source (label 0) gives

    w(x) = p_t(x) / p_s(x) = (n_s / n_t) * P(t | x) / P(s | x)

(the factor n_s / n_t corrects the class prior of the training sample). Cross-fitting: the rows are
split into K stratified folds and each source row's weight comes from a model that did not see it.
Models: logistic regression on standardised features (default) or a small MLP (scikit-learn), with
optional probability calibration (sigmoid or isotonic) inside each fold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError
from .kernels import check_sizes
from .spec import EstimatorSpec, register


@dataclass
class ClassifierParams:
    model: str = "logistic"  # logistic | mlp
    folds: int = 5  # cross-fitting folds (>= 2)
    calibration: str = "none"  # none | sigmoid | isotonic
    C: float = 1.0  # inverse L2 strength of the logistic regression
    hidden: list[int] = field(default_factory=lambda: [64])  # MLP hidden sizes
    max_iter: int = 200
    eps: float = 1e-6  # probabilities are clipped to [eps, 1 - eps]
    seed: int = 0


def make_model(p: ClassifierParams):
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if p.model == "logistic":
        clf = LogisticRegression(C=p.C, max_iter=p.max_iter)
    elif p.model == "mlp":
        clf = MLPClassifier(hidden_layer_sizes=tuple(p.hidden), max_iter=p.max_iter, early_stopping=True,
                            random_state=p.seed)
    else:
        raise ConfigError(f"classifier: model must be logistic or mlp, got {p.model!r}")
    model = make_pipeline(StandardScaler(), clf)
    if p.calibration == "none":
        return model
    if p.calibration not in ("sigmoid", "isotonic"):
        raise ConfigError(f"classifier: calibration must be none, sigmoid or isotonic, got {p.calibration!r}")
    from sklearn.calibration import CalibratedClassifierCV

    return CalibratedClassifierCV(model, method=p.calibration, cv=3)


def out_of_fold_proba(X: np.ndarray, y: np.ndarray, p: ClassifierParams) -> np.ndarray:
    """P(target | x) for every row, each from a model fitted without that row's fold."""
    from sklearn.model_selection import StratifiedKFold

    if p.folds < 2:
        raise ConfigError("classifier: folds must be >= 2 (cross-fitting)")
    proba = np.empty(len(X))
    for train, held in StratifiedKFold(p.folds, shuffle=True, random_state=p.seed).split(X, y):
        model = make_model(p).fit(X[train], y[train])
        proba[held] = model.predict_proba(X[held])[:, 1]
    return proba


def fit(Xs: np.ndarray, Xt: np.ndarray, p: ClassifierParams):
    check_sizes(SPEC, Xs, Xt)
    X = np.concatenate([Xs, Xt]).astype(np.float32, copy=False)
    y = np.r_[np.zeros(len(Xs)), np.ones(len(Xt))]
    proba = np.clip(out_of_fold_proba(X, y, p), p.eps, 1 - p.eps)[: len(Xs)]
    w = len(Xs) / len(Xt) * proba / (1 - proba)
    return w, {"model": p.model, "folds": p.folds, "calibration": p.calibration, "prior_correction": len(Xs) / len(Xt)}


SPEC = register(EstimatorSpec("classifier", fit, ClassifierParams))
