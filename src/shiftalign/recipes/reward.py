"""Recipe ``reward``: a Bradley-Terry reward model (causal-LM body + scalar head) on paired rows.
The saved model loads with ``AutoModelForSequenceClassification.from_pretrained``.

    shiftalign train configs/reward.yaml
"""

from __future__ import annotations

from ..config import RunConfig
from ..models.load import load_reward_model
from ..ops.logprobs import BranchRewards
from .common import run_simple
from .spec import RECIPES, Recipe


def main(cfg):
    return run_simple(cfg, ("reward",), load_reward_model, BranchRewards)


RECIPES.register("reward", Recipe(main, RunConfig))
