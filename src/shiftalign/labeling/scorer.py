"""Scorer labeller: label pairs of policy samples with any registered scorer (``rl.scorers``).

With the gold scorer of a controlled experiment this is the *oracle* labeller: DPO on gold-labelled
on-policy pairs is the upper reference that pseudo-labelling and re-weighting are measured against
(the gap-recovery ratio of ``bench/shift``). Pairs are built and oriented as by the reward-model
labeller; confidence is sigmoid(score difference).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..data.text import text_of
from ..log import log
from .pairs import pairs_from_scores
from .samples import response


@dataclass
class ScorerLabelConfig:
    scorer: dict = field(default_factory=lambda: {"name": "vader"})  # any scorer of rl.scorers.SCORERS
    pairs: str = "best_vs_worst"  # best_vs_worst | random | all
    margin: float = 0.0


def label(groups, cfg: ScorerLabelConfig, seed: int = 0):
    from ..rl.scorers import make_scorer

    fn = make_scorer(cfg.scorer)
    flat = [ex for g in groups for ex in g]
    scores = fn([text_of(ex.prompt) for ex in flat], [text_of(response(ex)) for ex in flat])
    log(f"scored {len(flat)} samples with scorer {cfg.scorer.get('name')}")
    return pairs_from_scores(groups, [scores], cfg.pairs, cfg.margin, None, seed,
                             {"labeller": "scorer", "scorer": cfg.scorer})
