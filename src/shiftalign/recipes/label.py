"""``shiftalign label CONFIG``: preference labels for policy samples (the target domain).

Reads samples (``shiftalign sample`` output, or any rows with ``prompt`` and ``completion``),
groups them by prompt, and labels pairs with the configured labeller (registered in
:data:`LABELLERS`: ``reward_model``, ``judge``, or ``scorer`` — any registered
scorer, e.g. the gold reward of a controlled experiment for oracle labels). Writes atomically to ``output_dir``:
``pseudo_pairs.jsonl`` (paired rows with provenance: labeller, model, template hash, scores or
verdicts, margin, confidence) — trainable by the preference recipe as they are —,
``unlabelled.jsonl`` (every pair that got no label, with its reason) and ``label_summary.json`` (with an
ensemble of reward models or heads, ``head_agreement``: the share of pairs every model orders the same way).
With ``reward_model.orient`` the reward model selects and weights the pairs and a scorer orients them
(``labeling.orient``: the labels-only oracle and control); its ties are unlabelled (``orient tie``) and the
summary's ``orient`` counts them, with the pairs it reversed.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..config import dump_config
from ..io import write_json_atomic, write_text_atomic
from ..labeling import judge_labeller, reward_model, scorer
from ..labeling.judge_labeller import JudgeLabelConfig
from ..labeling.pairs import head_agreement
from ..labeling.reward_model import RewardLabelConfig
from ..labeling.samples import grouped_samples
from ..labeling.scorer import ScorerLabelConfig
from ..log import log
from ..registry import Registry
from ..rundir import claim

LABELLERS: Registry = Registry("labeller")
LABELLERS.register("reward_model", lambda groups, cfg, out: reward_model.label(groups, cfg.reward_model, cfg.seed))
LABELLERS.register("scorer", lambda groups, cfg, out: (*scorer.label(groups, cfg.scorer, cfg.seed), {}))
LABELLERS.register("judge", lambda groups, cfg, out: judge_labeller.label(groups, cfg.judge, cfg.seed, out,
                                                                                cfg.progress))


@dataclass
class LabelConfig:
    samples: str = ""  # rows with prompt + completion (ids optional), grouped by prompt
    output_dir: str = "runs/labels"
    labeller: str = "reward_model"  # reward_model | judge | scorer
    seed: int = 0
    progress: bool = True
    reward_model: RewardLabelConfig = field(default_factory=RewardLabelConfig)
    judge: JudgeLabelConfig = field(default_factory=JudgeLabelConfig)
    scorer: ScorerLabelConfig = field(default_factory=ScorerLabelConfig)


def _jsonl(rows) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def main(cfg: LabelConfig) -> dict:
    out = Path(cfg.output_dir)
    run = LABELLERS.get(cfg.labeller)
    groups, set_aside = grouped_samples(cfg.samples)
    log(f"label: {sum(map(len, groups))} samples of {len(groups)} prompts with {cfg.labeller}"
        + (f" ({len(set_aside)} empty responses set aside)" if set_aside else ""))
    claim(out, cfg)  # after the samples are read and validated; another config's directory is refused
    pairs, dropped, stats = run(groups, cfg, out)
    dropped = set_aside + dropped
    summary = {"labeller": cfg.labeller, "pairs": len(pairs), "unlabelled": len(dropped),
               "reasons": dict(Counter(str(d["reason"]) for d in dropped)), **stats}
    if (agreement := head_agreement(pairs)) is not None:
        summary["head_agreement"] = agreement
    write_text_atomic(out / "pseudo_pairs.jsonl", _jsonl(pairs))
    write_text_atomic(out / "unlabelled.jsonl", _jsonl(dropped))
    write_json_atomic(out / "label_summary.json", summary)
    write_text_atomic(out / "config.yaml", dump_config(cfg))
    log(f"{len(pairs)} labelled pairs, {len(dropped)} unlabelled {summary['reasons']}"
        + (f", every model agrees on {agreement:.3f} of them" if agreement is not None else "") + f" -> {out}")
    if stats.get("fatal_error"):
        from ..errors import ShiftalignError
        raise ShiftalignError(f"labelling stopped: {stats['fatal_error']} (finished items are cached; rerun to resume)")
    return summary
