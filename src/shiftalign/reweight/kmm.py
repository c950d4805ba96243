"""KMM: kernel mean matching.

Huang et al., 2007, "Correcting Sample Selection Bias by Unlabeled Data", Eq. 6: choose source
weights beta so that the weighted source mean embedding matches the target's,

    minimise  1/2 beta^T K beta - kappa^T beta,   K_ij = k(x_s,i, x_s,j),
              kappa_i = (n_s / n_t) sum_j k(x_s,i, x_t,j)
    s.t.      0 <= beta_i <= B,   |sum_i beta_i - n_s| <= n_s eps,

with a ridge term lambda/2 |beta|^2 added to the objective (K -> K + lambda I): without it the
problem is degenerate along the directions K cannot see and the weights come out erratic
(rank correlation with the true ratio 0.0-0.4 on 2-d Gaussians here; 0.93-0.99 with lambda = 10).
Solved by accelerated projected gradient (exact projection onto the box-and-sum set by
bisection). K is n_s x n_s, so the cost grows with n_s^2: KMM refuses more than ``max_n`` rows
(n_s + n_t). KMM has no held-out criterion; the kernel width is the median distance heuristic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .kernels import check_sizes, gaussian, median_distance, sq_dists
from .spec import EstimatorSpec, register


@dataclass
class KMMParams:
    B: float = 1000.0  # upper bound on any weight
    eps: float | None = None  # tolerance on the mean weight; default (sqrt(n_s) - 1) / sqrt(n_s)
    sigma_factor: float = 1.0  # x median distance
    ridge: float = 10.0  # lambda of the ridge term; shrinks the weights toward a smooth solution
    max_iter: int = 3000
    tol: float = 1e-8
    seed: int = 0


def project(v: np.ndarray, B: float, lo: float, hi: float) -> np.ndarray:
    """Euclidean projection onto {0 <= x <= B, lo <= sum x <= hi}: clip(v - tau) for a scalar tau."""
    x = np.clip(v, 0, B)
    s = x.sum()
    if lo <= s <= hi:
        return x
    target = lo if s < lo else hi
    a, b = v.min() - B - 1.0, v.max() + 1.0  # sum(clip(v - tau)) falls from n B to 0 as tau goes a -> b
    for _ in range(100):
        tau = (a + b) / 2
        if np.clip(v - tau, 0, B).sum() > target:
            a = tau
        else:
            b = tau
    return np.clip(v - (a + b) / 2, 0, B)


def fit(Xs: np.ndarray, Xt: np.ndarray, p: KMMParams):
    check_sizes(SPEC, Xs, Xt)
    rng = np.random.default_rng(p.seed)
    Xs, Xt = np.asarray(Xs, np.float64), np.asarray(Xt, np.float64)
    ns, nt = len(Xs), len(Xt)
    sigma = p.sigma_factor * median_distance(np.concatenate([Xs, Xt]), rng)
    K = gaussian(sq_dists(Xs, Xs), sigma) + p.ridge * np.eye(ns)
    kappa = ns / nt * gaussian(sq_dists(Xs, Xt), sigma).sum(1)
    eps = p.eps if p.eps is not None else (np.sqrt(ns) - 1) / np.sqrt(ns)
    lo, hi = ns * (1 - eps), ns * (1 + eps)
    from scipy.sparse.linalg import eigsh

    L = float(eigsh(K, k=1, which="LA", return_eigenvectors=False)[0])  # Lipschitz constant of the gradient
    beta = project(np.ones(ns), p.B, lo, hi)
    y, t = beta.copy(), 1.0
    obj = lambda b: 0.5 * b @ K @ b - kappa @ b  # noqa: E731
    prev = obj(beta)
    it = 0
    for it in range(1, p.max_iter + 1):
        new = project(y - (K @ y - kappa) / L, p.B, lo, hi)
        t_new = (1 + np.sqrt(1 + 4 * t * t)) / 2
        y = new + (t - 1) / t_new * (new - beta)
        beta, t = new, t_new
        cur = obj(beta)
        if abs(prev - cur) <= p.tol * max(1.0, abs(prev)):
            break
        prev = cur
    return beta, {"sigma": sigma, "ridge": p.ridge, "B": p.B, "eps": eps, "iterations": it, "objective": float(obj(beta))}


# max_n caps n_s + n_t: K alone is then at most ~0.5 GB in float64
SPEC = register(EstimatorSpec("kmm", fit, KMMParams, max_n=8000))
