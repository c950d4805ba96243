"""Pseudo-labels checked against gold, where gold exists (an experiment): how many are right, and whether the
reward model's ensemble knew which were not.

- **Label accuracy**: the share of labelled pairs whose chosen response has the higher gold score (gold ties
  left out).
- **Spread AUROC**: for the pairs scored by two or more members (reward models or heads), the AUROC of the
  members' spread (provenance ``spread``: the std over members of the pair's score difference,
  ``labeling.pairs``) as a score for "the ensemble orders this pair against gold" (``metrics.spread_auroc``,
  with its bootstrap interval over the pairs). For the reward model's own pairs that is "the pseudo-label is
  wrong"; a pair reoriented by another scorer (``labeling.orient``) is read in the ensemble's order, so the
  number describes the ensemble, as ``head_agreement`` does. Coste et al. (2024) filter and bound labels by
  this spread; Eisenstein et al. (2023) show members can share their errors, where the spread stays low:
  this is the measurement of how much it flags, for bootstrap heads and diverse members (``models.diverse_heads``)
  alike. None with fewer than two members or without both right and wrong pairs.

One gold scoring pass serves both. Used per round by the pseudo arm (``experiment.arms.pseudo``).
"""

from __future__ import annotations

from pathlib import Path

from ..data.text import text_of
from ..io import read_jsonl
from ..metrics import spread_auroc


def pair_label_accuracy(pairs_file: Path, gold: dict) -> tuple[float | None, list[tuple[bool, float]]]:
    """(accuracy, checked): the fraction of labelled pairs whose chosen response has the higher gold score (gold
    ties left out; None without such pairs) and, for each of those pairs scored by two or more members,
    (whether the ensemble orders it against gold, its spread)."""
    from ..rl.scorers import make_scorer

    rows = read_jsonl(pairs_file) if Path(pairs_file).exists() else []
    if not rows:
        return None, []
    fn = make_scorer(dict(gold))
    prompts = [text_of(r["prompt"]) for r in rows]
    chosen = fn(prompts, [text_of(r["chosen"]) for r in rows])
    rejected = fn(prompts, [text_of(r["rejected"]) for r in rows])
    right, checked = [], []
    for row, c, r in zip(rows, chosen, rejected):
        if c == r:
            continue
        right.append(c > r)
        prov = row.get("provenance") or {}
        members = prov.get("model_scores")
        if members and len(members[0]) > 1 and prov.get("spread") is not None:
            ensemble_prefers_chosen = sum(members[0]) >= sum(members[1])
            checked.append((ensemble_prefers_chosen != (c > r), float(prov["spread"])))
    return (sum(right) / len(right) if right else None), checked


def round_label_check(pairs_file: Path, gold: dict, seed: int = 0) -> dict:
    """A round's ``label_accuracy`` and ``spread_auroc`` with its ``spread_auroc_ci95`` (bootstrap over the
    pairs, seeded) and ``spread_auroc_pairs`` / ``spread_auroc_wrong`` (the pairs it read, the wrong ones)."""
    accuracy, checked = pair_label_accuracy(pairs_file, gold)
    auc = spread_auroc([s for _, s in checked], [w for w, _ in checked], seed=seed) if checked else None
    return {"label_accuracy": accuracy, "spread_auroc": auc["auroc"] if auc else None,
            "spread_auroc_ci95": auc["ci95"] if auc else None, "spread_auroc_pairs": auc["pairs"] if auc else None,
            "spread_auroc_wrong": auc["wrong"] if auc else None}
