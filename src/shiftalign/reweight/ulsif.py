"""uLSIF and RuLSIF: least-squares density-ratio fitting in closed form, with closed-form
leave-one-out selection of the kernel width sigma and the ridge lambda.

Model: r(x) = sum_l theta_l K_sigma(x, c_l), centres c_l drawn from the target (numerator) sample.
RuLSIF (Yamada et al., 2013, "Relative Density-Ratio Estimation for Robust Distribution
Comparison", Eq. 4-5) estimates the alpha-relative ratio

    r_alpha(x) = p_t(x) / (alpha p_t(x) + (1 - alpha) p_s(x))     (bounded by 1/alpha)

by minimising  alpha/2 E_t[r^2] + (1-alpha)/2 E_s[r^2] - E_t[r] + lambda/2 |theta|^2 :

    H = alpha/n_t Phi_t^T Phi_t + (1-alpha)/n_s Phi_s^T Phi_s,   h = mean Phi_t,
    theta = max(0, (H + lambda I)^-1 h).

alpha = 0 is uLSIF (Kanamori, Hido & Sugiyama, 2009, "A Least-squares Approach to Direct Importance
Estimation", Sec. 3.3). Leave-one-out: with n = min(n_s, n_t) pairs, leaving pair i out is a rank-2
downdate of H, so every theta_{-i} follows from one b x b inverse by the Woodbury identity (for
alpha = 0 this reduces to Kanamori et al.'s Sec. 3.4 formula); the LOO score is the held-out objective
alpha/2 r(x_t,i)^2 + (1-alpha)/2 r(x_s,i)^2 - r(x_t,i).

What the weights are: with alpha > 0 the estimate is r_alpha, not the importance weight p_t / p_s.
It is bounded, which is RuLSIF's robustness, and it flattens the weights: a pair with plain ratio r
gets r / (alpha r + 1 - alpha). ``correct: true`` maps it back to the plain ratio,
r = (1 - alpha) r_alpha / (1 - alpha r_alpha), with alpha r_alpha capped at 0.999 (the map diverges at
1); by default the relative ratio is kept, a tempered importance weight.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .kernels import centers, check_sizes, gaussian, median_distance, sq_dists
from .spec import EstimatorSpec, register


@dataclass
class ULSIFParams:
    alpha: float = 0.0  # 0: uLSIF (plain ratio); in (0, 1): RuLSIF's relative ratio
    correct: bool = False  # alpha > 0: map the relative ratio back to the plain ratio p_t / p_s
    n_centers: int = 100
    sigma_factors: list[float] = field(default_factory=lambda: [0.25, 0.5, 1.0, 2.0, 4.0])  # x median distance
    lambdas: list[float] = field(default_factory=lambda: [1e-3, 1e-2, 1e-1, 1.0])
    seed: int = 0


def loo_scores(Phi_s: np.ndarray, Phi_t: np.ndarray, alpha: float, lam: float) -> float:
    """Mean leave-one-out objective over n = min(n_s, n_t) (source, target) pairs."""
    n = min(len(Phi_s), len(Phi_t))
    Ps, Pt = Phi_s[:n], Phi_t[:n]  # (n, b)
    b = Ps.shape[1]
    H = alpha / n * Pt.T @ Pt + (1 - alpha) / n * Ps.T @ Ps
    h = Pt.mean(0)
    # H_{-i} + lam I = n/(n-1) (B - U_i U_i^T / n), B = H + lam (n-1)/n I, U_i = [sqrt(a) t_i, sqrt(1-a) s_i]
    Binv = np.linalg.inv(H + lam * (n - 1) / n * np.eye(b))
    U = np.stack([np.sqrt(alpha) * Pt, np.sqrt(1 - alpha) * Ps], axis=2)  # (n, b, 2)
    BU = np.einsum("bc,ncj->nbj", Binv, U)  # B^-1 U_i
    S = n * np.eye(2)[None] - np.einsum("nbj,nbk->njk", U, BU)  # n I - U^T B^-1 U   (n, 2, 2)
    h_i = (n * h[None, :] - Pt) / (n - 1)  # (n, b)
    Bh = h_i @ Binv.T  # B^-1 h_i
    coef = np.linalg.solve(S, np.einsum("nbj,nb->nj", U, Bh)[..., None])[..., 0]  # (n, 2)
    theta = (n - 1) / n * (Bh + np.einsum("nbj,nj->nb", BU, coef))
    theta = np.maximum(theta, 0.0)
    r_t = (Pt * theta).sum(1)
    r_s = (Ps * theta).sum(1)
    return float(np.mean(alpha / 2 * r_t ** 2 + (1 - alpha) / 2 * r_s ** 2 - r_t))


def fit_theta(Phi_s, Phi_t, alpha: float, lam: float) -> np.ndarray:
    b = Phi_s.shape[1]
    H = alpha / len(Phi_t) * Phi_t.T @ Phi_t + (1 - alpha) / len(Phi_s) * Phi_s.T @ Phi_s
    return np.maximum(np.linalg.solve(H + lam * np.eye(b), Phi_t.mean(0)), 0.0)


def fit(Xs: np.ndarray, Xt: np.ndarray, p: ULSIFParams):
    check_sizes(SPEC, Xs, Xt)  # rulsif shares uLSIF's fit, and its cap
    if not 0 <= p.alpha < 1:
        from ..errors import ConfigError
        raise ConfigError(f"ulsif: alpha must be in [0, 1), got {p.alpha}")
    rng = np.random.default_rng(p.seed)
    Xs, Xt = np.asarray(Xs, np.float64), np.asarray(Xt, np.float64)
    C = centers(Xt, p.n_centers, rng)
    Ds, Dt = sq_dists(Xs, C), sq_dists(Xt, C)
    # LOO pairs are taken in a random order so that file order does not matter.
    ps, pt = rng.permutation(len(Xs)), rng.permutation(len(Xt))
    med = median_distance(np.concatenate([Xs, Xt]), rng)
    scores = {}
    for f in p.sigma_factors:
        Ks, Kt = gaussian(Ds, f * med), gaussian(Dt, f * med)
        for lam in p.lambdas:
            scores[(f, lam)] = loo_scores(Ks[ps], Kt[pt], p.alpha, lam)
    f, lam = min(scores, key=scores.get)
    sigma = f * med
    theta = fit_theta(gaussian(Ds, sigma), gaussian(Dt, sigma), p.alpha, lam)
    w = gaussian(Ds, sigma) @ theta
    if p.correct and p.alpha > 0:
        a_r = np.minimum(p.alpha * w, 0.999)
        w = (1 - p.alpha) * (a_r / p.alpha) / (1 - a_r)
    info = {"sigma": sigma, "lambda": lam, "alpha": p.alpha, "corrected": bool(p.correct and p.alpha > 0),
            "loo_score": scores[(f, lam)],
            "grid": {f"sigma={k[0] * med:.4g},lambda={k[1]:g}": v for k, v in scores.items()}}
    return w, info


SPEC = register(EstimatorSpec("ulsif", fit, ULSIFParams, max_n=200_000))


@dataclass
class RuLSIFParams(ULSIFParams):
    alpha: float = 0.1


register(EstimatorSpec("rulsif", fit, RuLSIFParams, max_n=SPEC.max_n))
