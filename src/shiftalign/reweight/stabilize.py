"""Weight stabilisers: clipping, power tempering, self-normalisation.

Importance weights are heavy-tailed; each stabiliser trades bias for variance:
- clip: w <- min(w, c), with c absolute or the q-quantile of the weights (Ionides, 2008, "Truncated
  Importance Sampling");
- temper: w <- w^gamma, gamma in [0, 1] (gamma = 0 gives uniform weights, 1 leaves them);
- normalise: w <- w / mean(w) over the dataset (self-normalised importance sampling), so that the
  weights average 1; per batch, the training loop's sum(w l) / sum(w) already self-normalises.
Applied in the order temper, clip, normalise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError


@dataclass
class StabiliserConfig:
    temper: float = 1.0  # exponent gamma in [0, 1]
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


def stabilise(w: np.ndarray, cfg: StabiliserConfig) -> np.ndarray:
    w = np.asarray(w, np.float64)
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ConfigError("weights must be finite and >= 0 before stabilising")
    w = clip(temper(w, cfg.temper), cfg.clip, cfg.clip_quantile)
    return normalize(w) if cfg.normalize else w
