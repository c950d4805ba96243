"""Bradley-Terry reward heads on frozen features: an ensemble for the price of one backbone forward.

A reward r_k(x) = theta_k . phi(x) / s is linear in frozen features phi(x) of (prompt, response)
(``models.features``: sentence embeddings, or mean-pooled hidden states of a causal LM), s the
per-feature scale of the training responses. The Bradley-Terry likelihood of a pair,
P(chosen > rejected) = sigmoid(r(chosen) - r(rejected)) (Bradley & Terry, 1952; Ouyang et al., 2022,
Eq. 1), is then a logistic regression without intercept on the feature difference
d = (phi(chosen) - phi(rejected)) / s, fitted by scikit-learn with an L2 penalty; the data are
symmetrised ({d, 1} and {-d, 0}) so that both classes exist.

- **Importance-weighted BT**: with weights w_i (density ratios of the source pairs toward the
  target, from any estimator of ``reweight``) the fit maximises sum_i w_i log sigmoid(theta . d_i) - penalty,
  the importance-weighted likelihood of Shimodaira (2000, Eq. 4.1) under covariate shift.
- **Ensemble**: the features are computed once; head k is fitted on a bootstrap resample of the pairs
  (multinomial counts times the weights), so the K heads give a mean score and a spread (the std over
  heads) for filtering or weighting pseudo-labels (Coste et al., 2024; Lakshminarayanan et al., 2017).
- The penalty is chosen by 5-fold cross-validated, weighted log-loss over a grid of 13 values
  (1e-3 to 1e3) unless given.

Saved as a directory: ``reward_heads.json`` (feature settings, penalty, training summary) and
``heads.safetensors`` (theta: K x d, scale: d). ``is_heads_dir`` tells such a directory from a
reward model's; the reward-model labeller and scorer accept either.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..config import from_dict
from ..errors import ConfigError
from ..io import atomic_path, read_text, write_json_atomic
from .features import FeatureConfig, extract

META = "reward_heads.json"


@dataclass
class RewardHeads:
    theta: np.ndarray  # (K, d)
    scale: np.ndarray  # (d,)
    features: FeatureConfig
    l2: float  # scikit-learn's C (inverse penalty) the heads were fitted with
    info: dict  # training summary: pairs, effective pairs, weighted, ...

    def scores(self, X: np.ndarray) -> np.ndarray:
        """(K, N) scores of N feature rows under each head."""
        return self.theta @ (np.asarray(X, np.float64) / self.scale).T

    def score_texts(self, pairs: list[tuple[str, str]], cache_dir: Path | None) -> np.ndarray:
        """(K, N) scores of (prompt text, response text) pairs: one feature extraction for all heads."""
        return self.scores(extract(pairs, self.features, cache_dir))

    def save(self, directory: Path) -> None:
        from safetensors.numpy import save_file

        directory = Path(directory)
        with atomic_path(directory / "heads.safetensors") as tmp:
            save_file({"theta": np.ascontiguousarray(self.theta), "scale": np.ascontiguousarray(self.scale)}, str(tmp))
        write_json_atomic(directory / META, {"features": asdict(self.features), "heads": int(self.theta.shape[0]),
                                             "l2": self.l2, **self.info})

    @classmethod
    def load(cls, directory: Path) -> RewardHeads:
        from safetensors.numpy import load_file

        directory = Path(directory)
        meta = json.loads(read_text(directory / META))
        t = load_file(str(directory / "heads.safetensors"))
        info = {k: v for k, v in meta.items() if k not in ("features", "heads", "l2")}
        return cls(t["theta"], t["scale"], from_dict(FeatureConfig, meta["features"], f"{directory / META}: features"),
                   float(meta["l2"]), info)


def is_heads_dir(path: str | Path) -> bool:
    return (Path(path) / META).is_file()


def _logistic(C: float):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, fit_intercept=False, max_iter=2000)


def choose_l2(D: np.ndarray, weights: np.ndarray, seed: int, grid=tuple(np.logspace(-3, 3, 13))) -> float:
    """C (inverse L2 penalty) with the best 5-fold cross-validated, weighted log-loss on the pairs."""
    from sklearn.metrics import log_loss
    from sklearn.model_selection import KFold

    n = len(D)
    X, y, sw = np.concatenate([D, -D]), np.r_[np.ones(n), np.zeros(n)], np.r_[weights, weights]
    folds = [(np.r_[tr, tr + n], np.r_[te, te + n])  # a pair's two mirrored rows stay in one fold
             for tr, te in KFold(5, shuffle=True, random_state=seed).split(D)]
    losses = [sum(log_loss(y[te], _logistic(C).fit(X[tr], y[tr], sample_weight=sw[tr]).predict_proba(X[te]),
                           sample_weight=sw[te], labels=[0, 1]) for tr, te in folds) for C in grid]
    return float(grid[int(np.argmin(losses))])


def fit_heads(chosen: np.ndarray, rejected: np.ndarray, weights: np.ndarray | None = None, heads: int = 8,
              l2: float | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """(theta (K, d), scale (d,), C) of K Bradley-Terry heads on features of chosen and rejected responses.
    ``weights``: per-pair importance weights (None: uniform); ``heads`` = 1 fits on all pairs once."""
    chosen, rejected = np.asarray(chosen, np.float64), np.asarray(rejected, np.float64)
    if chosen.shape != rejected.shape or chosen.ndim != 2 or len(chosen) < 10:
        raise ConfigError(f"reward heads need at least 10 pairs of equal-shape features, got {chosen.shape}")
    n = len(chosen)
    w = np.ones(n) if weights is None else np.asarray(weights, np.float64)
    if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ConfigError("reward heads: weights must be one finite, non-negative number per pair, not all zero")
    w = w * n / w.sum()  # mean 1: the penalty means the same whatever the weights' scale
    scale = np.concatenate([chosen, rejected]).std(0)
    scale[scale == 0] = 1.0
    D = (chosen - rejected) / scale
    C = choose_l2(D, w, seed) if l2 is None else float(l2)
    X, y = np.concatenate([D, -D]), np.r_[np.ones(n), np.zeros(n)]
    rng = np.random.default_rng(seed)
    theta = []
    for k in range(heads):
        counts = np.ones(n) if heads == 1 else rng.multinomial(n, np.full(n, 1 / n)).astype(np.float64)
        sw = counts * w
        theta.append(_logistic(C).fit(X, y, sample_weight=np.r_[sw, sw]).coef_[0])
    return np.stack(theta), scale, C
