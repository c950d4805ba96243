"""KLIEP: Kullback-Leibler importance estimation, with likelihood cross-validation of the kernel width.

Sugiyama et al., 2008, "Direct Importance Estimation with Model Selection and Its Application to
Covariate Shift Adaptation", Eq. 6 and Fig. 2: with r(x) = sum_l theta_l K_sigma(x, c_l) and centres
from the target sample,

    maximise  (1/n_t) sum_j log r(x_t,j)   s.t.  (1/n_s) sum_i r(x_s,i) = 1,  theta >= 0,

solved by gradient ascent with projection onto the constraints. sigma is chosen by k-fold
likelihood cross-validation over the target sample (held-out mean log r).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .kernels import centers, check_sizes, gaussian, median_distance, sq_dists
from .spec import EstimatorSpec, register


@dataclass
class KLIEPParams:
    n_centers: int = 100
    sigma_factors: list[float] = field(default_factory=lambda: [0.25, 0.5, 1.0, 2.0, 4.0])  # x median distance
    folds: int = 5
    max_iter: int = 2000
    lr: float = 1e-3
    tol: float = 1e-7
    seed: int = 0


def kliep_theta(A: np.ndarray, bvec: np.ndarray, p: KLIEPParams) -> np.ndarray:
    """A: (n_t, b) target design, bvec: (b,) mean source design. Sugiyama et al.'s projected ascent."""
    theta = np.ones(A.shape[1])
    bb = float(bvec @ bvec)

    def project(t):
        t = t + (1 - bvec @ t) * bvec / bb
        t = np.maximum(t, 0.0)
        return t / max(bvec @ t, 1e-300)

    theta = project(theta)
    obj = np.mean(np.log(A @ theta + 1e-300))
    lr = p.lr
    for _ in range(p.max_iter):
        grad = A.T @ (1.0 / (A @ theta + 1e-300)) / len(A)
        new = project(theta + lr * grad / max(np.abs(grad).max(), 1e-300) * theta.sum())
        new_obj = np.mean(np.log(A @ new + 1e-300))
        if new_obj < obj:  # overshoot: smaller step
            lr *= 0.5
            if lr < 1e-12:
                break
            continue
        done = new_obj - obj < p.tol
        theta, obj = new, new_obj
        lr *= 1.1
        if done:
            break
    return theta


def fit(Xs: np.ndarray, Xt: np.ndarray, p: KLIEPParams):
    check_sizes(SPEC, Xs, Xt)
    rng = np.random.default_rng(p.seed)
    Xs, Xt = np.asarray(Xs, np.float64), np.asarray(Xt, np.float64)
    C = centers(Xt, p.n_centers, rng)
    Ds, Dt = sq_dists(Xs, C), sq_dists(Xt, C)
    med = median_distance(np.concatenate([Xs, Xt]), rng)
    fold = rng.permutation(len(Xt)) % max(2, min(p.folds, len(Xt)))
    scores = {}
    for f in p.sigma_factors:
        Ks, Kt = gaussian(Ds, f * med), gaussian(Dt, f * med)
        bvec = Ks.mean(0)
        held = []
        for k in np.unique(fold):
            theta = kliep_theta(Kt[fold != k], bvec, p)
            held.append(np.mean(np.log(Kt[fold == k] @ theta + 1e-300)))
        scores[f] = float(np.mean(held))
    f = max(scores, key=scores.get)
    sigma = f * med
    Ks = gaussian(Ds, sigma)
    theta = kliep_theta(gaussian(Dt, sigma), Ks.mean(0), p)
    info = {"sigma": sigma, "cv_log_likelihood": scores[f],
            "grid": {f"sigma={k * med:.4g}": v for k, v in scores.items()}}
    return Ks @ theta, info


SPEC = register(EstimatorSpec("kliep", fit, KLIEPParams, max_n=200_000))
