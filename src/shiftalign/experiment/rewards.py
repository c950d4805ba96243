"""Reward models of an experiment: how they are trained, and what the shift costs them.

``reward_model.kind`` picks the model: ``finetune`` (the ``reward`` recipe: a Bradley-Terry model from
the initial policy's weights, trained with ``reward_train``) or ``heads`` (``shiftalign heads fit``:
an ensemble of Bradley-Terry heads on frozen features, one feature extraction for all heads). Either
can be importance-weighted toward the target: the per-pair weights multiply each pair's likelihood
term (the loop's weighted reduction, or the heads' sample weights). A kind that declares ``aligns`` (``heads``)
can instead, or as well, be fitted on features aligned toward target samples (``align``: CORAL, Sun, Feng &
Saenko, 2016, ``models.align``): a pseudo arm's ``align`` option aligns its reward model toward the initial
policy's target samples (the shared reward model is trained before those samples are drawn). A kind that
declares ``diverse`` (``heads``) can split its ensemble over several feature sets (``members``, or ``diverse:
true``: every candidate layer of ``features.layer`` and the sentence embedding; ``models.diverse_heads``, after
Eisenstein et al., 2023), for the shared reward model, or for a pseudo arm's own (``reward_members`` /
``reward_diverse``).

The **shift cost** of a reward model is its accuracy against gold on held-out source pairs (in its
own domain: the pairs of ``data.heldout_pairs``, ordered by their recorded gold scores) minus its
accuracy on on-policy pairs of the initial policy's samples of each target prompt, built like the
source pairs (``on_policy_pairs``): ``best_vs_worst`` (the highest- against the lowest-gold sample) or
``all`` (every two samples whose gold scores differ); the accuracy on the other construction is
reported beside it. Accuracy counts a reward-model tie as 1/2. A reward model on aligned features is measured
the same way: it scores both kinds of pairs on their raw features, as it scores what it labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..data.text import text_of
from ..errors import ConfigError
from ..io import read_jsonl
from ..models.align import AlignConfig
from ..models.diverse_heads import member_sets, split_heads
from ..models.features import FeatureConfig
from ..registry import Registry

PAIRS = ("all", "best_vs_worst")


@dataclass(frozen=True)
class RewardKind:
    name: str
    # (setup, out: Path, weights: str | None, align: AlignConfig | None, target: str | None, members) -> the model's
    # path; align and target (samples to align toward) are given only to a kind that ``aligns``, members (feature
    # sets) only to a kind that is ``diverse``
    train: Callable
    refits_per_round: bool  # whether ``recipes.iterate`` can re-fit it toward each round's samples (``refit``)
    aligns: bool = False  # whether it can be fitted on features aligned toward target samples (``align``)
    diverse: bool = False  # whether its ensemble can be split over several feature sets (``members``)


REWARD_KINDS: Registry[RewardKind] = Registry("reward-model kind")


def _heads(ctx, out: Path, weights: str | None, align: AlignConfig | None = None, target: str | None = None,
           members: list[FeatureConfig] | None = None) -> str:
    from ..recipes.reward_heads import RewardHeadsConfig
    from ..recipes.reward_heads import main as heads_main

    spec = ctx.cfg.reward_model
    heads_main(RewardHeadsConfig(pairs=ctx.data.source_pairs, output_dir=str(out), features=spec.features,
                                 heads=spec.heads, l2=spec.l2, weights=weights, seed=ctx.cfg.seed,
                                 align=align, align_target=target if align is not None else None,
                                 **heads_members(spec, members)))
    return str(out)


def heads_members(spec: RewardSpec, members: list[FeatureConfig] | None = None) -> dict:
    """The feature sets of a heads reward model, as ``RewardHeadsConfig`` keys: ``members`` (an arm's own) when
    given, else the experiment's ``reward_model.members`` / ``diverse``."""
    return {"members": members} if members is not None else {"members": spec.members, "diverse": spec.diverse}


def _finetune(ctx, out: Path, weights: str | None) -> str:
    extra = {"weights": weights} if weights else {}
    rc = ctx.run_config("reward", out, ctx.data.source_pairs, ctx.cfg.reward_train, {"name": "bradley_terry"}, **extra)
    return ctx.train(rc).model


REWARD_KINDS.register("finetune", RewardKind("finetune", _finetune, refits_per_round=False))
REWARD_KINDS.register("heads", RewardKind("heads", _heads, refits_per_round=True, aligns=True, diverse=True))


def check_aligns(kind: str, where: str) -> None:
    """Refuse ``align`` for a reward-model kind that has no features to align."""
    if not REWARD_KINDS.get(kind).aligns:
        kinds = [k for k in REWARD_KINDS.names() if REWARD_KINDS.get(k).aligns]
        raise ConfigError(f"{where}: aligned features need reward_model.kind: {' or '.join(kinds)}, got {kind}")


def check_diverse(kind: str, where: str) -> None:
    """Refuse feature sets (``members`` / ``diverse``) for a reward-model kind that has no features."""
    if not REWARD_KINDS.get(kind).diverse:
        kinds = [k for k in REWARD_KINDS.names() if REWARD_KINDS.get(k).diverse]
        raise ConfigError(f"{where}: members on several feature sets need reward_model.kind: {' or '.join(kinds)}, "
                          f"got {kind}")


@dataclass
class RewardSpec:
    kind: str = "finetune"  # a REWARD_KINDS entry: finetune | heads
    heads: int = 8  # heads: ensemble size (bootstrap resamples)
    l2: float | None = None  # heads: scikit-learn's C; None: 5-fold cross-validation
    features: FeatureConfig = field(default_factory=FeatureConfig)  # heads: frozen features
    on_policy_pairs: str = "all"  # all | best_vs_worst: how the shift cost's on-policy pairs are built
    members: list[FeatureConfig] | None = None  # heads: split them over these feature sets (models.diverse_heads)
    diverse: bool = False  # heads: split them over every candidate layer of features.layer and the sentence embedding

    def __post_init__(self):
        REWARD_KINDS.get(self.kind)
        if self.members is not None or self.diverse:
            reward_member_sets(self, self.members, self.diverse, "reward_model.")
        if self.on_policy_pairs not in PAIRS:
            raise ConfigError(f"on_policy_pairs: expected one of {', '.join(PAIRS)}, got {self.on_policy_pairs!r}")


def reward_member_sets(spec: RewardSpec, members: list[FeatureConfig] | None, diverse: bool,
                       where: str) -> list[FeatureConfig]:
    """The feature sets of heads split over ``members`` (or, ``diverse``, over every candidate layer of
    ``spec.features`` and the sentence embedding), checked against ``spec``'s kind and head count; ``where``
    prefixes the keys in a message."""
    check_diverse(spec.kind, f"{where}members")
    sets = member_sets(spec.features, members, diverse, where)
    split_heads(spec.heads, len(sets))
    return sets


def train_reward(ctx, out: Path, weights: str | None = None, align: AlignConfig | None = None,
                 target: str | None = None, members: list[FeatureConfig] | None = None) -> str:
    """Train the experiment's kind of reward model on the source pairs into ``out``; its path. With ``align``:
    on features aligned toward ``target``'s (samples), for a kind that ``aligns``; with ``members``: split over
    those feature sets, for a kind that is ``diverse``."""
    kind, extra = ctx.cfg.reward_model.kind, {}
    if align is not None:
        check_aligns(kind, "align")
        if not target:
            raise ConfigError("align: aligning the reward model's features needs target samples to align toward")
        extra.update(align=align, target=target)
    if members is not None:
        check_diverse(kind, "members")
        extra["members"] = members
    return REWARD_KINDS.get(kind).train(ctx, out, weights, **extra)


def _scores(rm_path: str, prompts: list, responses: list[str], wrap: bool) -> np.ndarray:
    from ..rl.scorers import reward_model_scorer

    return np.array(reward_model_scorer(rm_path, wrap_text_as_chat=wrap)(prompts, responses), np.float64)


def shift_cost(ctx, rm_path: str, samples: str) -> dict:
    """In-domain (held-out source pairs) and on-policy accuracy (pairs of ``samples``, the initial policy's
    target samples) against gold, and their difference."""
    from ..metrics import pair_accuracy
    from ..rl.scorers import make_scorer

    cfg, spec, out = ctx.cfg, ctx.cfg.reward_model, {}
    if ctx.data.heldout_pairs:
        rows = read_jsonl(ctx.data.heldout_pairs)
        if rows and "gold_chosen" not in rows[0]:
            gold_fn = make_scorer(dict(cfg.gold))
            prompts = [text_of(r["prompt"]) for r in rows]
            for r, gc, gr in zip(rows, gold_fn(prompts, [text_of(r["chosen"]) for r in rows]),
                                 gold_fn(prompts, [text_of(r["rejected"]) for r in rows])):
                r["gold_chosen"], r["gold_rejected"] = gc, gr
        prompts = [r["prompt"] for r in rows for _ in (0, 1)]
        responses = [text_of(r[k]) for r in rows for k in ("chosen", "rejected")]
        gold = [r[k] for r in rows for k in ("gold_chosen", "gold_rejected")]
        groups = [str(i) for i in range(len(rows)) for _ in (0, 1)]
        out["in_domain_accuracy"], out["in_domain_pairs"] = pair_accuracy(
            _scores(rm_path, prompts, responses, cfg.wrap_text_as_chat), np.array(gold, np.float64), groups)
    samples = read_jsonl(samples)
    prompts = [s["prompt"] for s in samples]
    responses = [s["completion"] for s in samples]
    gold = np.array(make_scorer(dict(cfg.gold))([text_of(p) for p in prompts], responses), np.float64)
    groups = [str(s.get("prompt_id", text_of(s["prompt"]))) for s in samples]
    scores = _scores(rm_path, prompts, responses, cfg.wrap_text_as_chat)
    other = "all" if spec.on_policy_pairs == "best_vs_worst" else "best_vs_worst"
    out["on_policy_accuracy"], out["on_policy_pairs"] = pair_accuracy(scores, gold, groups, spec.on_policy_pairs)
    out[f"on_policy_accuracy_{other}"] = pair_accuracy(scores, gold, groups, other)[0]
    out["on_policy_construction"] = spec.on_policy_pairs
    if out.get("in_domain_accuracy") is not None and out["on_policy_accuracy"] is not None:
        out["shift_cost"] = out["in_domain_accuracy"] - out["on_policy_accuracy"]
    return out
