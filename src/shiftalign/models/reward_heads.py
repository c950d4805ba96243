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
  (1e-3 to 1e3) unless given; with importance weights this is importance-weighted cross-validation
  (Sugiyama, Krauledat & Mueller, 2007).
- **Feature layer**: given candidate layers (``features.layer: [9, 12, 15, 18]``), :func:`choose_layer`
  picks the (layer, penalty) with the lowest cross-validated log-loss over all candidates and the grid,
  on the same folds of the training pairs: each layer at its own CV-chosen penalty, then the best layer.
  Pairs held out for reporting play no part in it.

- **Aligned features** (``models.align``: CORAL, Sun, Feng & Saenko, 2016): the heads are fitted on the
  source pairs' features mapped toward the target samples' covariance, and score texts on their raw features
  (a classifier trained on re-coloured source features is applied to raw target features, Algorithm 1).
  The map is saved with the heads; :meth:`RewardHeads.source_scores` applies it to source-domain features,
  and :func:`alignment_keeps_labels` checks on held-out source pairs, mapped as the training pairs were,
  that the heads on the aligned features lose no more than 0.02 of the accuracy of heads on the raw ones.

- **Diverse members** (``models.diverse_heads``, after Eisenstein et al., 2023): the K heads split over several
  feature sets (layers of the policy, a sentence embedding), so that members differ in their features as well as
  in their resample; :meth:`RewardHeads.load` reads either kind of directory.

Saved as a directory: ``reward_heads.json`` (feature settings, penalty, training summary, the alignment's
settings) and ``heads.safetensors`` (theta: K x d, scale: d; with an alignment its map: d x d and two means).
``is_heads_dir`` tells such a directory from a reward model's; the reward-model labeller and scorer accept either.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..config import from_dict
from ..errors import ConfigError
from ..io import atomic_path, read_text, write_json_atomic
from ..metrics import chosen_accuracy
from .align import Alignment
from .diverse_heads import DiverseHeads
from .features import FeatureConfig, extract

META = "reward_heads.json"


@dataclass
class RewardHeads:
    theta: np.ndarray  # (K, d)
    scale: np.ndarray  # (d,)
    features: FeatureConfig
    l2: float  # scikit-learn's C (inverse penalty) the heads were fitted with
    info: dict  # training summary: pairs, effective pairs, weighted, ...
    alignment: Alignment | None = None  # the map of the source features the heads were fitted on (models.align)

    @property
    def size(self) -> int:
        """K: how many members of an ensemble the heads count as."""
        return int(self.theta.shape[0])

    def scores(self, X: np.ndarray) -> np.ndarray:
        """(K, N) scores of N feature rows under each head."""
        return self.theta @ (np.asarray(X, np.float64) / self.scale).T

    def source_scores(self, X: np.ndarray) -> np.ndarray:
        """(K, N) scores of N source-domain feature rows, mapped as the training pairs' were (no alignment: raw)."""
        return self.scores(X if self.alignment is None else self.alignment.source(X))

    def score_texts(self, pairs: list[tuple[str, str]], cache_dir: Path | None) -> np.ndarray:
        """(K, N) scores of (prompt text, response text) pairs: one feature extraction for all heads. Raw
        features, with an alignment too: CORAL's heads apply to the target's features as they are."""
        return self.scores(extract(pairs, self.features, cache_dir))

    def save(self, directory: Path) -> None:
        from safetensors.numpy import save_file

        directory = Path(directory)
        tensors = {"theta": np.ascontiguousarray(self.theta), "scale": np.ascontiguousarray(self.scale)}
        with atomic_path(directory / "heads.safetensors") as tmp:
            save_file({**tensors, **(self.alignment.tensors() if self.alignment else {})}, str(tmp))
        write_json_atomic(directory / META, {"features": asdict(self.features), "heads": int(self.theta.shape[0]),
                                             "l2": self.l2, "align": self.alignment.meta() if self.alignment else None,
                                             **self.info})

    @classmethod
    def load(cls, directory: Path) -> RewardHeads | DiverseHeads:
        """The heads saved in ``directory``; a diverse ensemble's (``members`` in its ``reward_heads.json``) as
        :class:`models.diverse_heads.DiverseHeads`, whose ``size`` and ``score_texts`` read the same."""
        from safetensors.numpy import load_file

        directory = Path(directory)
        meta = json.loads(read_text(directory / META))
        t = load_file(str(directory / "heads.safetensors"))
        if "members" in meta:
            return DiverseHeads.from_saved(directory, meta, t, cls)
        info = {k: v for k, v in meta.items() if k not in ("features", "heads", "l2", "align")}
        alignment = Alignment.from_saved(meta["align"], t) if meta.get("align") else None
        return cls(t["theta"], t["scale"], from_dict(FeatureConfig, meta["features"], f"{directory / META}: features"),
                   float(meta["l2"]), info, alignment)


def is_heads_dir(path: str | Path) -> bool:
    return (Path(path) / META).is_file()


def _logistic(C: float):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, fit_intercept=False, max_iter=2000)


FOLDS = 5
L2_GRID = tuple(np.logspace(-3, 3, 13))


def cv_curve(D: np.ndarray, weights: np.ndarray, seed: int, grid=L2_GRID) -> tuple[np.ndarray, np.ndarray]:
    """(log-loss, accuracy) of the Bradley-Terry fit at each C of ``grid``, 5-fold cross-validated and weighted,
    on the pairs' scaled feature differences D (n, d). The log-loss is summed over the folds (each fold's
    weighted mean); the accuracy pools the folds' pairs: the weighted share whose held-out margin theta . d is
    positive, a tie counting half. The folds depend on n and ``seed`` only, so every feature set of the same
    pairs is scored on the same folds."""
    from sklearn.metrics import log_loss
    from sklearn.model_selection import KFold

    n = len(D)
    X, y, sw = np.concatenate([D, -D]), np.r_[np.ones(n), np.zeros(n)], np.r_[weights, weights]
    pairs = list(KFold(FOLDS, shuffle=True, random_state=seed).split(D))
    folds = [(np.r_[tr, tr + n], np.r_[te, te + n]) for tr, te in pairs]  # a pair's two mirrored rows stay together
    losses, accuracies = [], []
    for C in grid:
        loss, right = 0.0, 0.0
        for (tr, te), (_, te_pairs) in zip(folds, pairs):
            model = _logistic(C).fit(X[tr], y[tr], sample_weight=sw[tr])
            loss += log_loss(y[te], model.predict_proba(X[te]), sample_weight=sw[te], labels=[0, 1])
            margin = D[te_pairs] @ model.coef_[0]
            right += float(weights[te_pairs] @ ((margin > 0) + 0.5 * (margin == 0)))
        losses.append(loss)
        accuracies.append(right / weights.sum())
    return np.array(losses), np.array(accuracies)


def choose_l2(D: np.ndarray, weights: np.ndarray, seed: int, grid=L2_GRID) -> float:
    """C (inverse L2 penalty) with the best 5-fold cross-validated, weighted log-loss on the pairs."""
    return float(grid[int(np.argmin(cv_curve(D, weights, seed, grid)[0]))])


def choose_layer(layers: dict[int, tuple[np.ndarray, np.ndarray]], weights: np.ndarray | None = None,
                 l2: float | None = None, seed: int = 0) -> tuple[int, float, list[dict]]:
    """(layer, C, table) of the candidate layer and penalty with the lowest 5-fold cross-validated, weighted
    log-loss of the Bradley-Terry fit on the training pairs: jointly over the candidates and the grid (each
    layer at its own CV-chosen C; ``l2`` given: that C for all), on the same folds for every layer. ``layers``:
    {layer: (chosen (n, d), rejected (n, d))} features of the same training pairs; ``table``: per candidate,
    its C and cross-validated log-loss (mean over folds) and accuracy. The first listed wins a tie."""
    grid = L2_GRID if l2 is None else (float(l2),)
    table = []
    for layer, (chosen, rejected) in layers.items():
        D, w, _ = _differences(chosen, rejected, weights)
        losses, accuracies = cv_curve(D, w, seed, grid)
        j = int(np.argmin(losses))
        table.append({"layer": layer, "l2": float(grid[j]), "cv_log_loss": float(losses[j]) / FOLDS,
                      "cv_accuracy": float(accuracies[j])})
    if not table:
        raise ConfigError("reward heads: no candidate layer to choose from")
    best = min(table, key=lambda row: row["cv_log_loss"])
    return best["layer"], best["l2"], table


def _differences(chosen: np.ndarray, rejected: np.ndarray, weights: np.ndarray | None):
    """(D, w, scale): the pairs' feature differences over the per-feature scale of their responses, and
    the weights checked and scaled to mean 1."""
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
    return (chosen - rejected) / scale, w, scale


def fit_heads(chosen: np.ndarray, rejected: np.ndarray, weights: np.ndarray | None = None, heads: int = 8,
              l2: float | None = None, seed: int = 0, resample: bool | None = None
              ) -> tuple[np.ndarray, np.ndarray, float]:
    """(theta (K, d), scale (d,), C) of K Bradley-Terry heads on features of chosen and rejected responses.
    ``weights``: per-pair importance weights (None: uniform); ``heads`` = 1 fits on all pairs once, unless
    ``resample`` (None: bootstrap resamples when ``heads`` > 1; True: always, as for a member of a diverse
    ensemble, ``models.diverse_heads``)."""
    D, w, scale = _differences(chosen, rejected, weights)
    n = len(D)
    C = choose_l2(D, w, seed) if l2 is None else float(l2)
    X, y = np.concatenate([D, -D]), np.r_[np.ones(n), np.zeros(n)]
    rng = np.random.default_rng(seed)
    resample = heads > 1 if resample is None else resample
    theta = []
    for k in range(heads):
        counts = rng.multinomial(n, np.full(n, 1 / n)).astype(np.float64) if resample else np.ones(n)
        sw = counts * w
        theta.append(_logistic(C).fit(X, y, sample_weight=np.r_[sw, sw]).coef_[0])
    return np.stack(theta), scale, C


MAX_ACCURACY_LOSS = 0.02  # held-out source accuracy an alignment may cost the heads


def alignment_keeps_labels(chosen: np.ndarray, rejected: np.ndarray, held_chosen: np.ndarray,
                           held_rejected: np.ndarray, alignment: Alignment, l2: float | None = None, seed: int = 0,
                           tolerance: float = MAX_ACCURACY_LOSS) -> dict:
    """Whether ``alignment`` kept the label information of the source pairs: one head fitted on the raw
    features of the training pairs (chosen, rejected (n, d)) and one on their aligned features, each scored on
    the held-out source pairs as its training pairs were seen (raw, or through the same map). ``kept``: the
    aligned head's held-out accuracy is at most ``tolerance`` below the raw one's; a map that destroys the
    features (all rows to one point) scores 1/2 and fails."""
    accuracy = {}
    for name, f in (("raw", lambda X: np.asarray(X, np.float64)), ("aligned", alignment.source)):
        theta, scale, _ = fit_heads(f(chosen), f(rejected), None, heads=1, l2=l2, seed=seed)
        accuracy[name] = chosen_accuracy(f(held_chosen) / scale @ theta[0], f(held_rejected) / scale @ theta[0])
    return {"held_out_accuracy_raw_features": accuracy["raw"], "held_out_accuracy_aligned": accuracy["aligned"],
            "tolerance": tolerance, "kept": accuracy["aligned"] >= accuracy["raw"] - tolerance}
