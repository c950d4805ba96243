"""Recipe ``sft``: supervised fine-tuning on prompt/completion (or messages) rows.

    shiftalign train configs/sft.yaml
"""

from __future__ import annotations

from ..models.load import load_policy
from ..ops.logprobs import CompletionLogProbs
from . import RECIPES
from .common import logger, make_accelerator, resolve_loss, run, write_start


def main(cfg):
    acc = make_accelerator(cfg)
    log = logger(acc)
    spec, params = resolve_loss(cfg, ("sft",))
    write_start(cfg, acc)
    model, tokenizer = load_policy(cfg.model)
    return run(cfg, spec, params, model, tokenizer, CompletionLogProbs(model), acc, log)


RECIPES.register("sft", main)
