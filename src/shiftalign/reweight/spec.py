"""The estimator spec and the registry of density-ratio estimators, apart from the package so that an
estimator file can register itself without importing the package that imports it."""

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
