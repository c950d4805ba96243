"""``shiftalign heads fit CONFIG``: an ensemble of Bradley-Terry reward heads on frozen features
(``models.reward_heads``), optionally importance-weighted toward a target domain.

Reads preference pairs (and, with ``weights``, a weights file keyed by pair id such as
``shiftalign weights fit`` writes), extracts the features of every chosen and rejected response once,
fits ``heads`` bootstrap heads, and writes ``output_dir``: ``heads.safetensors``,
``reward_heads.json`` (settings, accuracy on the training pairs and on ``held_out`` pairs) and
``config.yaml``. The directory is a reward model for the ``reward_model`` labeller and scorer.

With candidate layers (``features: {kind: hidden, layer: [9, 12, 15, 18]}``) the layer is chosen, with
the penalty, by 5-fold cross-validation on the training pairs (``models.reward_heads.choose_layer``),
every candidate's features coming from one forward pass; ``reward_heads.json`` records each candidate's
cross-validated log-loss and accuracy and the chosen layer, and its ``features`` name that layer. The
``held_out`` pairs are read only after the choice, and only report.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..config import dump_config
from ..data.load import attach_weights, load_examples, load_weights
from ..io import write_text_atomic
from ..log import log
from ..metrics import chosen_accuracy
from ..models.features import FEATURE_KINDS, FeatureConfig, candidate_layers, extract, extract_layers
from ..models.packaged import cache_root
from ..models.reward_heads import FOLDS, RewardHeads, choose_layer, fit_heads
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


def _cache(cfg: RewardHeadsConfig) -> Path:
    return Path(cfg.cache_dir) if cfg.cache_dir else cache_root() / "features"


def pair_features(examples, cfg: RewardHeadsConfig, features: FeatureConfig | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(chosen (n, d), rejected (n, d)) features of the pairs, under ``features`` (default ``cfg.features``)."""
    chosen, rejected = source_texts(examples, "both")
    X = extract(chosen + rejected, features or cfg.features, _cache(cfg))  # one extraction for every head
    return X[: len(examples)], X[len(examples):]


def choose_features(train, w: np.ndarray, cfg: RewardHeadsConfig):
    """(features, chosen (n, d), rejected (n, d), C, choice) on the training pairs. With candidate layers
    (``features.layer`` a list): every candidate's features from one forward pass, and the layer and C with
    the best 5-fold cross-validated log-loss on these pairs (``choose_layer``); ``features`` then names the
    chosen layer, and ``choice`` records the candidates. One layer: its features, ``cfg.l2``, no choice."""
    layers = candidate_layers(cfg.features)
    if layers is None:
        return (cfg.features, *pair_features(train, cfg), cfg.l2, None)
    chosen, rejected = source_texts(train, "both")
    by_layer = {layer: (X[: len(train)], X[len(train):])
                for layer, X in extract_layers(chosen + rejected, cfg.features, _cache(cfg)).items()}
    layer, C, table = choose_layer(by_layer, w, cfg.l2, cfg.seed)
    choice = {"criterion": f"{FOLDS}-fold cross-validated, weighted log-loss on the training pairs",
              "candidates": table, "chosen": layer}
    return (replace(cfg.features, layer=layer), *by_layer[layer], C, choice)


def main(cfg: RewardHeadsConfig) -> dict:
    out = Path(cfg.output_dir)
    train = load_examples(cfg.pairs, "paired")
    if cfg.weights:
        train = attach_weights(train, load_weights(cfg.weights), cfg.weights, cfg.missing_weight)
    held = load_examples(cfg.held_out, "paired") if cfg.held_out else None
    FEATURE_KINDS.get(cfg.features.kind)  # an unknown feature kind stops before anything is written
    claim(out, cfg)  # after the config and the files are validated
    w = np.array([1.0 if e.weight is None else e.weight for e in train], np.float64)
    features, Xc, Xr, l2, choice = choose_features(train, w, cfg)  # the training pairs only
    theta, scale, C = fit_heads(Xc, Xr, w, cfg.heads, l2, cfg.seed)
    heads = RewardHeads(theta, scale, features, C, {})
    info = {"pairs": len(train), "weighted": bool(cfg.weights),
            "weight_ess_fraction": float(w.sum() ** 2 / (len(w) * (w * w).sum())),
            "train_accuracy": _ensemble_accuracy(heads, Xc, Xr)}
    if choice is not None:
        info["layer_choice"] = choice
        log(f"reward heads: layer {choice['chosen']} of {[c['layer'] for c in choice['candidates']]} by "
            f"{FOLDS}-fold CV on the training pairs (CV accuracy "
            + ", ".join(f"{c['layer']}: {c['cv_accuracy']:.3f}" for c in choice["candidates"]) + ")")
    if held is not None:  # only after the choice: held-out pairs report, they choose nothing
        Hc, Hr = pair_features(held, cfg, features)
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
