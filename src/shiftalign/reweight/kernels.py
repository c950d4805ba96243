"""Gaussian kernel design matrices and the median-distance heuristic shared by the kernel estimators."""

from __future__ import annotations

import numpy as np


def sq_dists(X: np.ndarray, C: np.ndarray) -> np.ndarray:
    """(n, b) squared Euclidean distances."""
    d = (X * X).sum(1)[:, None] + (C * C).sum(1)[None, :] - 2.0 * X @ C.T
    return np.maximum(d, 0.0)


def gaussian(D2: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(-D2 / (2.0 * sigma * sigma))


def median_distance(X: np.ndarray, rng: np.random.Generator, m: int = 1000) -> float:
    """Median pairwise distance of (a sample of) X: the natural scale for a kernel width."""
    idx = rng.choice(len(X), size=min(m, len(X)), replace=False)
    D = np.sqrt(sq_dists(X[idx], X[idx]))
    med = float(np.median(D[np.triu_indices(len(idx), 1)]))
    return med if med > 0 else 1.0


def centers(Xt: np.ndarray, b: int, rng: np.random.Generator) -> np.ndarray:
    """Kernel centres: b target points chosen at random (the numerator sample, as in uLSIF and KLIEP)."""
    return Xt[rng.choice(len(Xt), size=min(b, len(Xt)), replace=False)]


def check_sizes(spec, Xs: np.ndarray, Xt: np.ndarray) -> None:
    """Refuse features an estimator cannot fit: not 2-D of one width, under 2 rows a side, or more rows in all than
    its spec's ``max_n``."""
    from ..errors import ConfigError

    name, max_n = spec.name, spec.max_n
    if Xs.ndim != 2 or Xt.ndim != 2 or Xs.shape[1] != Xt.shape[1]:
        raise ConfigError(f"{name}: source and target features must be 2-D with the same width "
                          f"(got {Xs.shape} and {Xt.shape})")
    if len(Xs) < 2 or len(Xt) < 2:
        raise ConfigError(f"{name}: needs at least 2 source and 2 target rows")
    if max_n is not None and len(Xs) + len(Xt) > max_n:
        raise ConfigError(f"{name}: {len(Xs)} source + {len(Xt)} target rows exceed its cap of {max_n} "
                          f"(its cost grows with n^2); subsample, or use the classifier estimator")
