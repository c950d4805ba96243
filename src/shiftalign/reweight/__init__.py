"""Density-ratio re-weighting: estimate w(x) ~ p_target(x) / p_source(x) for each source example.

Every estimator is one file registered in :data:`ESTIMATORS` with the same call:

    weights, info = spec.fit(Xs, Xt, params)      # Xs (n_s, d) source, Xt (n_t, d) target features

``weights`` (n_s,) grow toward the target (w > 1 where target density is higher); ``info`` holds
what the estimator selected (kernel width, regularisation, CV scores). ``EstimatorSpec.max_n`` caps
the sizes an estimator accepts (kernel matrices grow with n^2); above it, ``kernels.check_sizes`` stops with
a clear error.
"""

from __future__ import annotations

from . import classifier, kliep, kmm, ulsif  # noqa: F401  (registration)
from .spec import ESTIMATORS, EstimatorSpec, register  # noqa: F401  (the package's names)
