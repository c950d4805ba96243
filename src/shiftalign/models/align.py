"""Feature alignment of the source pairs toward the policy's target samples, for the reward heads: CORAL.

CORAL (Sun, Feng & Saenko, 2016, "Return of Frustratingly Easy Domain Adaptation", AAAI; the same
second-order alignment is the loss of Deep CORAL, Sun & Saenko, 2016) maps the source features by the
linear A that minimises ||A^T Ĉ_s A - Ĉ_t||_F^2 (Eq. 1), whose solution whitens the source with
Ĉ_s^{-1/2} and re-colours it with Ĉ_t^{1/2} (Eq. 2-6, Algorithm 1):

    x  ->  (x - μ_s) Ĉ_s^{-1/2} Ĉ_t^{1/2} + μ_t,        Ĉ = C + ε (tr C / d) I,

with C and μ the covariance (1/n) and the mean of a domain's feature rows (d features): for the reward
heads, the source rows are the features of the training pairs' chosen and rejected responses, the
target rows those of the policy's samples of the target prompts (``models.features``, same settings).

- **Ridge**: Algorithm 1 adds I to each covariance; here the ridge is ε times the covariance's mean
  variance tr C / d, so that one ε means the same for unit-norm sentence embeddings and for hidden states
  of any scale (ε = 1 is the paper's C + I on features of unit variance). It also makes Ĉ invertible when
  there are fewer rows than features. With the same distribution in both domains the map is the identity.
- **Means**: Algorithm 1 maps the features as given; here the source is centred and moved to the target's
  mean, so that the aligned source matches the target in its first moment too (what a linear domain
  classifier sees first). The Bradley-Terry heads do not see it: a pair's score difference
  θ . (φ(chosen) - φ(rejected)) A loses any translation.
- **Where it applies**: the classifier is trained on the aligned source features and applied to the
  target features as they are (Algorithm 1; Sec. 3). So heads fitted with CORAL score every text on its
  raw features (``RewardHeads.score_texts``: the texts they are used on, the policy's samples, are the
  target's); the map is stored with them (``heads.safetensors``, ``reward_heads.json``'s ``align``) to
  re-apply it to source-domain features: ``RewardHeads.source_scores``, with which
  ``models.reward_heads.alignment_keeps_labels`` checks on held-out source pairs, mapped as the training
  pairs were, that the map kept the pairs' label information.
- **Assumption**: the target's features are the source's re-coloured, with the labels carried along. Where
  instead the reward is the same function of the raw features in both domains (pure covariate shift), the
  re-colouring changes what the heads learn and can cost accuracy on the target: the experiment's shift
  cost (on-policy accuracy against gold) is what tells which case holds (CONTRIBUTING.md, rule 13).

Run with ``shiftalign heads fit`` (``align: {method: coral, eps: 1.0}``, ``align_target: samples.jsonl``)
or, in an experiment, a pseudo arm's ``align`` option (``experiment.arms.pseudo``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import ConfigError
from ..registry import Registry


@dataclass
class AlignConfig:
    method: str = "coral"  # an ALIGNMENTS entry: coral
    eps: float = 1.0  # coral: ridge on each covariance, in units of its mean variance tr(C)/d (> 0)

    def __post_init__(self):
        ALIGNMENTS.get(self.method)
        if not (isinstance(self.eps, (int, float)) and np.isfinite(self.eps) and self.eps > 0):
            raise ConfigError(f"align.eps: expected a finite number > 0 (the covariance ridge), got {self.eps!r}")


@dataclass
class Alignment:
    """A fitted map of source feature rows: x -> (x - source_mean) @ matrix + target_mean."""

    method: str
    eps: float
    matrix: np.ndarray  # (d, d)
    source_mean: np.ndarray  # (d,)
    target_mean: np.ndarray  # (d,)

    def source(self, X: np.ndarray) -> np.ndarray:
        """(n, d) source-domain feature rows mapped toward the target."""
        return (np.asarray(X, np.float64) - self.source_mean) @ self.matrix + self.target_mean

    def meta(self) -> dict:
        return {"method": self.method, "eps": self.eps}

    def tensors(self) -> dict[str, np.ndarray]:
        return {"align_matrix": np.ascontiguousarray(self.matrix), "align_source_mean": self.source_mean,
                "align_target_mean": self.target_mean}

    @classmethod
    def from_saved(cls, meta: dict, tensors: dict[str, np.ndarray]) -> Alignment:
        return cls(meta["method"], float(meta["eps"]), tensors["align_matrix"], tensors["align_source_mean"],
                   tensors["align_target_mean"])


@dataclass(frozen=True)
class AlignMethod:
    name: str
    fit: Callable  # (Xs (n_s, d), Xt (n_t, d), AlignConfig) -> Alignment


ALIGNMENTS: Registry[AlignMethod] = Registry("alignment method")


def _check(Xs: np.ndarray, Xt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    Xs, Xt = np.asarray(Xs, np.float64), np.asarray(Xt, np.float64)
    if Xs.ndim != 2 or Xt.ndim != 2 or Xs.shape[1] != Xt.shape[1] or len(Xs) < 2 or len(Xt) < 2:
        raise ConfigError(f"align: need two or more rows of the same features in each domain, got source "
                          f"{Xs.shape} and target {Xt.shape}")
    if not (np.all(np.isfinite(Xs)) and np.all(np.isfinite(Xt))):
        raise ConfigError("align: the features hold non-finite values")
    return Xs, Xt


def _ridged_cov(X: np.ndarray, eps: float, where: str) -> np.ndarray:
    Z = X - X.mean(0)
    C = Z.T @ Z / len(X)
    mean_var = float(np.trace(C)) / C.shape[0]
    if mean_var <= 0:
        raise ConfigError(f"align: the {where} features do not vary; nothing to align")
    return C + eps * mean_var * np.eye(C.shape[0])


def _power(C: np.ndarray, p: float) -> np.ndarray:
    """C^p of a symmetric positive-definite matrix, by its eigendecomposition."""
    w, V = np.linalg.eigh(C)
    return (V * np.clip(w, np.finfo(np.float64).tiny, None) ** p) @ V.T


def coral(Xs: np.ndarray, Xt: np.ndarray, cfg: AlignConfig) -> Alignment:
    """CORAL of source rows ``Xs`` toward target rows ``Xt``: A = Ĉ_s^{-1/2} Ĉ_t^{1/2} (module docstring)."""
    Xs, Xt = _check(Xs, Xt)
    A = _power(_ridged_cov(Xs, cfg.eps, "source"), -0.5) @ _power(_ridged_cov(Xt, cfg.eps, "target"), 0.5)
    return Alignment("coral", float(cfg.eps), A, Xs.mean(0), Xt.mean(0))


ALIGNMENTS.register("coral", AlignMethod("coral", coral))


def align(Xs: np.ndarray, Xt: np.ndarray, cfg: AlignConfig) -> Alignment:
    """The alignment of ``cfg.method`` fitted on source rows ``Xs`` toward target rows ``Xt``."""
    return ALIGNMENTS.get(cfg.method).fit(Xs, Xt, cfg)
