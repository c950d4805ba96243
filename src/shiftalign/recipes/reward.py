"""Recipe ``reward``: a Bradley-Terry reward model (causal-LM body + scalar head) on paired rows.
The saved model loads with ``AutoModelForSequenceClassification.from_pretrained``.

    shiftalign train configs/reward.yaml
"""

from __future__ import annotations

from ..models.load import load_reward_model
from ..ops.logprobs import BranchRewards
from . import RECIPES
from .common import logger, make_accelerator, resolve_loss, run, write_start


def main(cfg):
    acc = make_accelerator(cfg)
    log = logger(acc)
    spec, params = resolve_loss(cfg, ("reward",))
    write_start(cfg, acc)
    model, tokenizer = load_reward_model(cfg.model)
    return run(cfg, spec, params, model, tokenizer, BranchRewards(model), acc, log)


RECIPES.register("reward", main)
