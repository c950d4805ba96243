"""Recipe ``sft``: supervised fine-tuning on prompt/completion (or messages) rows.

    shiftalign train configs/sft.yaml
"""

from __future__ import annotations

from ..config import RunConfig
from ..models.load import load_policy
from ..ops.logprobs import CompletionLogProbs
from .common import run_simple
from .spec import RECIPES, Recipe


def main(cfg):
    return run_simple(cfg, ("sft",), load_policy, CompletionLogProbs)


RECIPES.register("sft", Recipe(main, RunConfig))
