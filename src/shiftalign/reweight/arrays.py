"""Density-ratio weights on plain arrays, for use from Python as a scikit-learn user expects.

Input: source features ``Xs`` (n_s, d) and target features ``Xt`` (n_t, d), any array-like of numbers.
Output: one weight per source row, w(x) ~ p_target(x) / p_source(x), from any registered estimator
(:data:`ESTIMATORS`: ``classifier`` — Sugiyama et al., 2012, "Density Ratio Estimation in Machine
Learning", Ch. 4; ``ulsif`` / ``rulsif`` — Kanamori et al., 2009, Yamada et al., 2013; ``kliep`` —
Sugiyama et al., 2008; ``kmm`` — Huang et al., 2007), optionally stabilised (tempering, clipping,
normalising: ``reweight.stabilize``). This is the estimator call that ``shiftalign weights fit`` makes
after extracting features, without the files::

    from shiftalign import DensityRatio, density_ratio

    w = density_ratio(Xs, Xt, estimator="ulsif")                    # (n_s,) raw ratio estimates
    dr = DensityRatio("classifier", folds=3, stabilise={"target_ess": 0.5}).fit(Xs, Xt)
    dr.weights_, dr.raw_weights_, dr.info_, dr.diagnostics_

The weights are those of the source rows given to ``fit`` (the classifier is cross-fitted and KMM is
transductive, so no estimator here is a function to evaluate on new rows).
"""

from __future__ import annotations

import numpy as np

from ..config import from_dict
from ..errors import ConfigError
from .diagnostics import summarize
from .spec import ESTIMATORS
from .stabilize import StabiliserConfig, stabilise_with_exponent


def _matrix(X, name: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]  # a single feature, as scikit-learn would need reshape(-1, 1)
    if X.ndim != 2 or not np.all(np.isfinite(X)):
        raise ConfigError(f"{name}: expected a finite 2-D array (n, d), got shape {X.shape}")
    return X


class DensityRatio:
    """Fit density-ratio weights of source rows toward a target sample.

    ``estimator``: a registered estimator's name; ``params``: that estimator's own parameters (e.g.
    ``folds=3`` for ``classifier``, ``alpha=0.1`` for ``rulsif``), checked against its parameter dataclass;
    ``stabilise``: None (raw estimates) or a :class:`StabiliserConfig` / mapping of its fields.

    After :meth:`fit`: ``weights_`` (n_s,) the weights (stabilised when ``stabilise`` is set, else equal to
    ``raw_weights_``), ``raw_weights_`` the estimator's output, ``info_`` what the estimator selected
    (kernel width, regularisation, cross-validation scores), ``temper_`` the tempering exponent used (1.0
    without stabilising), and ``diagnostics_`` (ESS/N, largest-weight share; with ``auc=True`` also the
    domain-classifier AUC before and after weighting).
    """

    def __init__(self, estimator: str = "ulsif", stabilise: StabiliserConfig | dict | None = None,
                 auc: bool = False, **params):
        self.spec = ESTIMATORS.get(estimator)
        self.params = from_dict(self.spec.params, params, "estimator")
        self.stabilise = from_dict(StabiliserConfig, stabilise, "stabilise") if isinstance(stabilise, dict) \
            else stabilise
        self.auc = auc

    def fit(self, Xs, Xt) -> DensityRatio:
        """Estimate the weights of the rows of ``Xs`` (n_s, d) toward ``Xt`` (n_t, d); returns ``self``."""
        Xs, Xt = _matrix(Xs, "Xs"), _matrix(Xt, "Xt")
        raw, self.info_ = self.spec.fit(Xs, Xt, self.params)
        self.raw_weights_ = np.asarray(raw, np.float64)
        self.weights_, self.temper_ = (stabilise_with_exponent(self.raw_weights_, self.stabilise)
                                       if self.stabilise is not None else (self.raw_weights_, 1.0))
        self.diagnostics_ = summarize(self.raw_weights_, self.weights_, *((Xs, Xt) if self.auc else (None, None)))
        return self

    def fit_weights(self, Xs, Xt) -> np.ndarray:
        """``fit(Xs, Xt).weights_``: the (n_s,) weights of the source rows."""
        return self.fit(Xs, Xt).weights_


def density_ratio(Xs, Xt, estimator: str = "ulsif", stabilise: StabiliserConfig | dict | None = None,
                  **params) -> np.ndarray:
    """The (n_s,) weights p_target / p_source of the rows of ``Xs`` (n_s, d) toward ``Xt`` (n_t, d), from the
    named estimator with its ``params`` and an optional stabiliser (see :class:`DensityRatio`)."""
    return DensityRatio(estimator, stabilise, **params).fit_weights(Xs, Xt)
