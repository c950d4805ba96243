"""``shiftalign weights fit CONFIG``: density-ratio weights of source pairs toward target rows.

Reads source preference rows and target (prompt, response) rows, extracts features, fits the
configured estimator, stabilises the weights, and writes atomically to ``output_dir``:
``weights.jsonl`` (``id``, ``weight``, ``raw_weight``), ``diagnostics.json`` (ESS, largest share,
domain AUC before/after, what the estimator selected) and ``weights.png``. ``shiftalign train``
then reads ``weights.jsonl`` through ``data.weights``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import dump_config, from_dict
from ..data.load import load_examples
from ..io import write_json_atomic, write_text_atomic
from ..log import log, warn
from ..models.features import FEATURE_KINDS, FeatureConfig, extract, reduce_dim, single_layer
from ..models.packaged import cache_root
from ..reweight import ESTIMATORS
from ..reweight.diagnostics import summarize
from ..reweight.pairs import combine, source_texts, target_texts
from ..reweight.plot import weight_histogram
from ..reweight.stabilize import StabiliserConfig, stabilise_with_exponent
from ..rundir import claim


@dataclass
class WeightsConfig:
    source: str = ""  # preference rows (prompt, chosen, rejected)
    target: str = ""  # target rows: prompt + completion (policy samples), or prompt only with pair_mode: prompt
    output_dir: str = "runs/weights"
    pair_mode: str = "both"  # prompt | chosen | rejected | both (see reweight.pairs)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    estimator: dict = field(default_factory=lambda: {"name": "classifier"})  # name + that estimator's parameters
    stabilise: StabiliserConfig = field(default_factory=StabiliserConfig)
    diagnostics_auc: bool = True  # domain-classifier AUC before/after weighting
    cache_dir: str | None = None  # feature cache; default $SHIFTALIGN_CACHE/features
    source_split: str = "train"
    target_split: str = "train"


@dataclass
class FittedWeights:
    """What ``weights fit`` wrote: the weights file (id, weight, raw_weight) and its diagnostics."""

    file: str
    diagnostics: dict  # ess_fraction(_raw), largest_share, domain_auc_before/after, estimator, selected, ...


def main(cfg: WeightsConfig) -> FittedWeights:
    out = Path(cfg.output_dir)
    knobs = dict(cfg.estimator)
    spec = ESTIMATORS.get(knobs.pop("name", "classifier"))
    params = from_dict(spec.params, knobs, "estimator")
    FEATURE_KINDS.get(cfg.features.kind)
    single_layer(cfg.features)
    source = load_examples(cfg.source, "paired", cfg.source_split)
    target = load_examples(cfg.target, "prompt" if cfg.pair_mode == "prompt" else "sample", cfg.target_split)
    texts = source_texts(source, cfg.pair_mode)  # an unknown pair_mode stops here
    stabilise_with_exponent(np.ones(2), cfg.stabilise)  # the stabiliser's settings, on weights that pass any check
    claim(out, cfg)  # after the config and both files are read and validated
    log(f"weights: {len(source)} source pairs, {len(target)} target rows, {spec.name} on "
        f"{cfg.features.kind} features ({cfg.pair_mode})")
    cache = Path(cfg.cache_dir) if cfg.cache_dir else cache_root() / "features"
    views = [extract(v, cfg.features, cache) for v in texts]
    Xt = extract(target_texts(target, cfg.pair_mode), cfg.features, cache)
    Xs = np.concatenate(views)
    Xs, Xt = reduce_dim(Xs, Xt, cfg.features.pca_dim)
    w_all, info = spec.fit(Xs, Xt, params)
    raw = combine(np.split(np.asarray(w_all, np.float64), len(views)))
    final, gamma = stabilise_with_exponent(raw, cfg.stabilise)
    Xs_pair = Xs[: len(source)] if len(views) == 1 else (Xs[: len(source)] + Xs[len(source):]) / 2
    diag = summarize(raw, final, *((Xs_pair, Xt) if cfg.diagnostics_auc else (None, None)))
    diag.update(temper=gamma, estimator=spec.name, selected=info, pair_mode=cfg.pair_mode, features=cfg.features.kind)
    write_text_atomic(out / "weights.jsonl", "".join(
        json.dumps({"id": e.id, "weight": float(w), "raw_weight": float(r)}) + "\n" for e, w, r in zip(source, final, raw)))
    write_json_atomic(out / "diagnostics.json", diag)
    write_text_atomic(out / "config.yaml", dump_config(cfg))
    weight_histogram(raw, final, diag, out / "weights.png", f"{spec.name} weights, {len(source)} source pairs")
    msg = (f"ESS/N {diag['ess_fraction']:.3f} (raw {diag['ess_fraction_raw']:.3f}, tempered with exponent "
           f"{gamma:.3g}), largest share {diag['largest_share']:.4f}")
    if "domain_auc_before" in diag:
        msg += f", domain AUC {diag['domain_auc_before']:.3f} -> {diag['domain_auc_after']:.3f}"
    log(f"{msg}; weights: {out / 'weights.jsonl'}; diagnostics: {out / 'diagnostics.json'}, plot: {out / 'weights.png'}")
    if "warning" in diag:
        warn(diag["warning"])
    return FittedWeights(str(out / "weights.jsonl"), diag)
