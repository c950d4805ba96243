"""Weight stabilisers: clipping, power tempering, self-normalisation.

Importance weights are heavy-tailed; each stabiliser trades bias for variance:
- clip: w <- min(w, c), with c absolute or the q-quantile of the weights (Ionides, 2008, "Truncated
  Importance Sampling");
- temper: w <- w^gamma, gamma in [0, 1] (gamma = 0 gives uniform weights, 1 leaves them). By default
  gamma is chosen from the weights: the largest gamma whose tempered (and clipped) weights keep a Kish
  effective sample size ESS/N = (sum w)^2 / (N sum w^2) of at least ``target_ess`` (default 0.5), found by
  bisection (ESS/N of w^gamma does not increase with gamma: log E[w^t] is convex in t). This is the
  flattening of Shimodaira (2000, Sec. 4, w^lambda) with lambda set from the effective sample size, as
  in adaptive tempering for sequential Monte Carlo (Jasra et al., 2011);
- normalise: w <- w / mean(w) over the dataset (self-normalised importance sampling), so that the
  weights average 1; per batch, the training loop's sum(w l) / sum(w) already self-normalises.
Applied in the order temper, clip, normalise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from .diagnostics import ess_fraction


@dataclass
class StabiliserConfig:
    temper: float | None = None  # exponent gamma in [0, 1]; None: the largest gamma reaching target_ess
    target_ess: float = 0.5  # ESS/N the chosen exponent keeps (used when temper is None)
    clip: float | None = None  # absolute upper bound on a weight (after tempering)
    clip_quantile: float | None = None  # or: bound at this quantile of the weights, e.g. 0.99
    normalize: bool = True  # divide by the mean: the weights average 1


def temper(w: np.ndarray, gamma: float) -> np.ndarray:
    if not 0 <= gamma <= 1:
        raise ConfigError(f"temper must be in [0, 1], got {gamma}")
    return np.power(w, gamma)


def clip(w: np.ndarray, bound: float | None = None, quantile: float | None = None) -> np.ndarray:
    if bound is not None and quantile is not None:
        raise ConfigError("set either clip or clip_quantile, not both")
    if quantile is not None:
        if not 0 < quantile <= 1:
            raise ConfigError(f"clip_quantile must be in (0, 1], got {quantile}")
        bound = float(np.quantile(w, quantile))
    return w if bound is None else np.minimum(w, bound)


def normalize(w: np.ndarray) -> np.ndarray:
    m = float(np.mean(w))
    if not m > 0:
        raise ConfigError("every weight is zero: nothing to normalise (the estimator found no overlap)")
    return w / m


def exponent_for_ess(w: np.ndarray, target: float, cfg: StabiliserConfig, iterations: int = 50) -> float:
    """The largest gamma in [0, 1] with ESS/N(clip(w^gamma)) >= target (1 when the weights reach it)."""
    if not 0 < target <= 1:
        raise ConfigError(f"target_ess must be in (0, 1], got {target}")

    def ess(g: float) -> float:
        return ess_fraction(clip(np.power(w, g), cfg.clip, cfg.clip_quantile))

    if ess(1.0) >= target:
        return 1.0
    lo, hi = 0.0, 1.0  # ess(lo) >= target > ess(hi)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ess(mid) >= target else (lo, mid)
    return lo


def stabilise_with_exponent(w: np.ndarray, cfg: StabiliserConfig) -> tuple[np.ndarray, float]:
    """Stabilised weights and the tempering exponent used (given, or chosen for ``target_ess``)."""
    w = np.asarray(w, np.float64)
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ConfigError("weights must be finite and >= 0 before stabilising")
    gamma = cfg.temper if cfg.temper is not None else exponent_for_ess(w, cfg.target_ess, cfg)
    w = clip(temper(w, gamma), cfg.clip, cfg.clip_quantile)
    return (normalize(w) if cfg.normalize else w), gamma


def stabilise(w: np.ndarray, cfg: StabiliserConfig) -> np.ndarray:
    return stabilise_with_exponent(w, cfg)[0]
