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

With ``align`` (``{method: coral, eps: 1.0}``, ``models.align``) and ``align_target`` (target rows: the
policy's samples, prompt + completion) the heads are fitted on the training pairs' features mapped toward the
target samples' features by CORAL (Sun, Feng & Saenko, 2016): the penalty is then chosen by cross-validation
on the aligned features (a layer, among candidates, on the raw ones). ``reward_heads.json`` records the
alignment and the domain-classifier AUC of the responses' features against the target's, raw and aligned;
with ``held_out`` pairs, their accuracy through the same map (``held_out_accuracy``) and on raw features
(``held_out_accuracy_raw_features``: how the heads score source texts when used), and the check that the
map kept the pairs' label information (``align_check``, ``models.reward_heads.alignment_keeps_labels``;
a warning when it did not). The heads score every text on its raw features (CORAL's classifier applies to
the target as it is).

With ``members`` (a list of feature sets) or ``diverse: true`` (every candidate layer of ``features.layer`` and
the sentence embedding) the ``heads`` are split over those feature sets instead: a diverse ensemble
(``models.diverse_heads``, after Eisenstein et al., 2023), every head on its own bootstrap resample, the hidden
layers of one model from one backbone pass. ``reward_heads.json`` records each set's head count and penalty, and
the training and held-out accuracy of the whole ensemble and of each set's heads (``*_accuracy_by_member``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..config import dump_config
from ..data.load import attach_weights, load_examples, load_weights
from ..errors import ConfigError
from ..io import write_text_atomic
from ..log import log, warn
from ..metrics import chosen_accuracy
from ..models.align import AlignConfig, align
from ..models.diverse_heads import DiverseHeads, extract_sets, member_sets, split_heads
from ..models.features import FEATURE_KINDS, FeatureConfig, candidate_layers, extract, extract_layers
from ..models.packaged import cache_root
from ..models.reward_heads import FOLDS, RewardHeads, alignment_keeps_labels, choose_layer, fit_heads
from ..reweight.diagnostics import domain_auc
from ..reweight.pairs import source_texts, target_texts
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
    align: AlignConfig | None = None  # fit on features aligned toward align_target's (models.align: CORAL)
    align_target: str | None = None  # with align: target rows (prompt + completion, e.g. the policy's samples)
    members: list[FeatureConfig] | None = None  # a diverse ensemble: the heads split over these feature sets
    diverse: bool = False  # a diverse ensemble over every candidate layer of features.layer and the sentence embedding

    def __post_init__(self):
        if (self.align is None) != (self.align_target is None):
            raise ConfigError("reward heads: align and align_target go together (the method, and the target "
                              f"samples it aligns toward), got align={self.align!r}, align_target={self.align_target!r}")
        sets = member_sets(self.features, self.members, self.diverse)
        if sets is not None:
            split_heads(self.heads, len(sets))
            if self.align is not None:
                raise ConfigError("reward heads: align maps one feature set; a diverse ensemble (members / diverse) "
                                  "has several")


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
    target = load_examples(cfg.align_target, "sample") if cfg.align_target else None
    FEATURE_KINDS.get(cfg.features.kind)  # an unknown feature kind stops before anything is written
    claim(out, cfg)  # after the config and the files are validated
    w = np.array([1.0 if e.weight is None else e.weight for e in train], np.float64)
    sets = member_sets(cfg.features, cfg.members, cfg.diverse)
    if sets is not None:
        return fit_diverse(cfg, out, train, held, w, sets)
    features, Xc, Xr, l2, choice = choose_features(train, w, cfg)  # the training pairs only
    alignment, align_info = None, None
    if target is not None:
        Xs, Xt = np.concatenate([Xc, Xr]), extract(target_texts(target, "both"), features, _cache(cfg))
        alignment = align(Xs, Xt, cfg.align)  # the training pairs' responses toward the target rows
        align_info = {**alignment.meta(), "target": cfg.align_target, "target_rows": len(target),
                      "domain_auc_before": domain_auc(Xs, Xt, seed=cfg.seed),
                      "domain_auc_after": domain_auc(alignment.source(Xs), Xt, seed=cfg.seed)}
        l2 = cfg.l2  # the penalty is chosen on the features the heads are fitted on
    fit_c, fit_r = (Xc, Xr) if alignment is None else (alignment.source(Xc), alignment.source(Xr))
    theta, scale, C = fit_heads(fit_c, fit_r, w, cfg.heads, l2, cfg.seed)
    heads = RewardHeads(theta, scale, features, C, {}, alignment)
    info = {**_weight_info(cfg, train, w), "train_accuracy": _ensemble_accuracy(heads, fit_c, fit_r)}
    if align_info is not None:
        info["alignment"] = align_info
        log(f"reward heads: {align_info['method']} toward {len(target)} target rows, domain AUC "
            f"{align_info['domain_auc_before']:.3f} -> {align_info['domain_auc_after']:.3f}")
    if choice is not None:
        info["layer_choice"] = choice
        log(f"reward heads: layer {choice['chosen']} of {[c['layer'] for c in choice['candidates']]} by "
            f"{FOLDS}-fold CV on the training pairs (CV accuracy "
            + ", ".join(f"{c['layer']}: {c['cv_accuracy']:.3f}" for c in choice["candidates"]) + ")")
    if held is not None:  # only after the choice: held-out pairs report, they choose nothing
        Hc, Hr = pair_features(held, cfg, features)
        info.update(held_out_pairs=len(held), held_out_accuracy=_ensemble_accuracy(heads, Hc, Hr, source=True))
        if alignment is not None:
            info["held_out_accuracy_raw_features"] = _ensemble_accuracy(heads, Hc, Hr)
            info["align_check"] = alignment_keeps_labels(Xc, Xr, Hc, Hr, alignment, cfg.l2, cfg.seed)
            if not info["align_check"]["kept"]:
                warn(f"reward heads: the alignment lost label information: held-out accuracy "
                     f"{info['align_check']['held_out_accuracy_aligned']:.3f} on aligned features against "
                     f"{info['align_check']['held_out_accuracy_raw_features']:.3f} on raw ones")
    heads.info = info
    heads.save(out)
    write_text_atomic(out / "config.yaml", dump_config(cfg))
    log(f"reward heads: {cfg.heads} heads on {cfg.features.kind} features of {len(train)} pairs (C={C:.3g}); "
        + ", ".join(f"{k} {v:.3f}" for k, v in info.items() if k.endswith("accuracy")) + f" -> {out}")
    return info


def _ensemble_accuracy(heads: RewardHeads, chosen: np.ndarray, rejected: np.ndarray, source: bool = False) -> float:
    """Share of pairs whose chosen response the ensemble's mean score puts higher (ties count half); ``source``:
    features of source pairs, mapped as the training pairs were (``RewardHeads.source_scores``)."""
    score = heads.source_scores if source else heads.scores
    return chosen_accuracy(score(chosen).mean(0), score(rejected).mean(0))


def _weight_info(cfg: RewardHeadsConfig, train, w: np.ndarray) -> dict:
    return {"pairs": len(train), "weighted": bool(cfg.weights),
            "weight_ess_fraction": float(w.sum() ** 2 / (len(w) * (w * w).sum()))}


def fit_diverse(cfg: RewardHeadsConfig, out: Path, train, held, w: np.ndarray, sets: list[FeatureConfig]) -> dict:
    """The heads split over the feature sets ``sets`` (``models.diverse_heads``), each head on its own bootstrap
    resample with its set's penalty (``cfg.l2``, or cross-validated per set), saved into ``out``; the summary."""
    def features_of(examples) -> list[tuple[np.ndarray, np.ndarray]]:
        chosen, rejected = source_texts(examples, "both")
        return [(X[: len(examples)], X[len(examples):]) for X in extract_sets(chosen + rejected, sets, _cache(cfg))]

    pairs = features_of(train)
    members = []
    for m, ((Xc, Xr), features, k) in enumerate(zip(pairs, sets, split_heads(cfg.heads, len(sets)))):
        theta, scale, C = fit_heads(Xc, Xr, w, k, cfg.l2, cfg.seed + m, resample=True)
        members.append(RewardHeads(theta, scale, features, C, {}))
    heads = DiverseHeads(members, {})
    info = {**_weight_info(cfg, train, w), **_diverse_accuracy(heads, pairs, "train")}
    if held is not None:
        info.update(held_out_pairs=len(held), **_diverse_accuracy(heads, features_of(held), "held_out"))
    heads.info = info
    heads.save(out)
    write_text_atomic(out / "config.yaml", dump_config(cfg))
    log(f"reward heads: {heads.size} heads over {len(sets)} feature sets "
        f"({', '.join(f'{f.kind} {f.layer}' if f.kind == 'hidden' else f.kind for f in sets)}) of {len(train)} "
        f"pairs; " + ", ".join(f"{k} {v:.3f}" for k, v in info.items() if k.endswith("accuracy")) + f" -> {out}")
    return info


def _diverse_accuracy(heads: DiverseHeads, pairs: list[tuple[np.ndarray, np.ndarray]], name: str) -> dict:
    """The accuracy of the whole ensemble's mean score and of each feature set's heads alone."""
    chosen = heads.score_sets([c for c, _ in pairs])
    rejected = heads.score_sets([r for _, r in pairs])
    ends = np.cumsum([m.size for m in heads.members])
    by_member = [chosen_accuracy(c.mean(0), r.mean(0)) for c, r in zip(np.split(chosen, ends[:-1]),
                                                                      np.split(rejected, ends[:-1]))]
    return {f"{name}_accuracy": chosen_accuracy(chosen.mean(0), rejected.mean(0)),
            f"{name}_accuracy_by_member": by_member}
