"""Density-ratio re-weighting: estimate w(x) ~ p_target(x) / p_source(x) for each source example.

Every estimator is one file registered in :data:`ESTIMATORS` with the same call:

    weights, info = spec.fit(Xs, Xt, params)      # Xs (n_s, d) source, Xt (n_t, d) target features

``weights`` (n_s,) grow toward the target (w > 1 where target density is higher); ``info`` holds
what the estimator selected (kernel width, regularisation, CV scores). ``max_n`` caps the sizes an
estimator accepts (kernel matrices grow with n^2); above it, a clear error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..registry import Registry


@dataclass(frozen=True)
class EstimatorSpec:
    name: str
    fit: Callable  # (Xs, Xt, params) -> (weights (n_s,), info dict)
    params: type
    max_n: int | None = None  # largest n_s + n_t accepted, None: no cap


ESTIMATORS: Registry[EstimatorSpec] = Registry("estimator")


def register(spec: EstimatorSpec) -> EstimatorSpec:
    return ESTIMATORS.register(spec.name, spec)


from . import classifier, kliep, kmm, ulsif  # noqa: E402,F401  (registration)
