"""``shiftalign heads fit CONFIG``: an ensemble of Bradley-Terry reward heads on frozen features
(``models.reward_heads``), optionally importance-weighted toward a target domain.

Reads preference pairs (and, with ``weights``, a weights file keyed by pair id such as
``shiftalign weights fit`` writes), extracts the features of every chosen and rejected response once,
fits ``heads`` bootstrap heads, and writes ``output_dir``: ``heads.safetensors``,
``reward_heads.json`` (settings, accuracy on the training pairs and on ``held_out`` pairs) and
``config.yaml``. The directory is a reward model for the ``reward_model`` labeller and scorer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import dump_config
from ..data.load import attach_weights, load_examples, load_weights
from ..io import write_text_atomic
from ..log import log
from ..metrics import chosen_accuracy
from ..models.features import FeatureConfig, extract
from ..models.packaged import cache_root
from ..models.reward_heads import RewardHeads, fit_heads
from ..reweight.pairs import source_texts
from ..rundir import claim


@dataclass
class RewardHeadsConfig:
    pairs: str = ""  # preference rows (prompt, chosen, rejected)
    output_dir: str = "runs/reward_heads"
    features: FeatureConfig = field(default_factory=FeatureConfig)
    heads: int = 8  # bootstrap heads (1: one fit on all pairs)
    l2: float | None = None  # scikit-learn's C; None: chosen by 5-fold cross-validated log-loss
    weights: str | None = None  # importance weights by pair id (importance-weighted Bradley-Terry)
    missing_weight: str = "error"  # error | one | drop, for pairs absent from the weights file
    held_out: str | None = None  # preference rows to report accuracy on (e.g. held-out source pairs)
    seed: int = 0
    cache_dir: str | None = None  # feature cache; default $SHIFTALIGN_CACHE/features


def pair_features(examples, cfg: RewardHeadsConfig) -> tuple[np.ndarray, np.ndarray]:
    cache = Path(cfg.cache_dir) if cfg.cache_dir else cache_root() / "features"
    chosen, rejected = source_texts(examples, "both")
    X = extract(chosen + rejected, cfg.features, cache)  # one extraction for every head
    return X[: len(examples)], X[len(examples):]


def main(cfg: RewardHeadsConfig) -> dict:
    out = Path(cfg.output_dir)
    train = load_examples(cfg.pairs, "paired")
    if cfg.weights:
        train = attach_weights(train, load_weights(cfg.weights), cfg.weights, cfg.missing_weight)
    held = load_examples(cfg.held_out, "paired") if cfg.held_out else None
    claim(out, cfg)  # after the config and the files are validated
    Xc, Xr = pair_features(train, cfg)
    w = np.array([1.0 if e.weight is None else e.weight for e in train], np.float64)
    theta, scale, C = fit_heads(Xc, Xr, w, cfg.heads, cfg.l2, cfg.seed)
    heads = RewardHeads(theta, scale, cfg.features, C, {})
    info = {"pairs": len(train), "weighted": bool(cfg.weights),
            "weight_ess_fraction": float(w.sum() ** 2 / (len(w) * (w * w).sum())),
            "train_accuracy": _ensemble_accuracy(heads, Xc, Xr)}
    if held is not None:
        Hc, Hr = pair_features(held, cfg)
        info.update(held_out_pairs=len(held), held_out_accuracy=_ensemble_accuracy(heads, Hc, Hr))
    heads.info = info
    heads.save(out)
    write_text_atomic(out / "config.yaml", dump_config(cfg))
    log(f"reward heads: {cfg.heads} heads on {cfg.features.kind} features of {len(train)} pairs (C={C:.3g}); "
        + ", ".join(f"{k} {v:.3f}" for k, v in info.items() if k.endswith("accuracy")) + f" -> {out}")
    return info


def _ensemble_accuracy(heads: RewardHeads, chosen: np.ndarray, rejected: np.ndarray) -> float:
    """Share of pairs whose chosen response the ensemble's mean score puts higher (ties count half)."""
    return chosen_accuracy(heads.scores(chosen).mean(0), heads.scores(rejected).mean(0))
