"""Recipe ``preference``: direct preference learning (DPO, IPO, cDPO, robust DPO, SimPO, SLiC on
paired rows; KTO on unpaired rows), the loss chosen by ``loss.name``.

Reference log-probs are pre-computed and cached (``train.reference``). Evaluation adds the exact
per-token KL(pi || pi_ref) of the next-token distributions along the eval responses.

    shiftalign train configs/dpo.yaml loss.beta=0.2
"""

from __future__ import annotations

import torch

from ..config import RunConfig
from ..models.load import load_policy
from ..ops.logprobs import CompletionLogProbs, backbone_hidden, response_logits
from ..train.reference import frozen_reference, reference_context
from .common import check_data, make_accelerator, resolve_loss, run
from .spec import RECIPES, Recipe


def token_kl_extra(reference):
    """Eval hook: KL(pi(.|ctx) || pi_ref(.|ctx)) per response position, as (sum, count) over the batch."""

    def extra(scorer, batch, out):
        policy = scorer.model
        logp = torch.log_softmax(response_logits(policy, backbone_hidden(policy, batch), batch), -1)
        ref_model = policy if reference is None else reference
        with reference_context(ref_model) if reference is None else torch.no_grad():
            logq = torch.log_softmax(response_logits(ref_model, backbone_hidden(ref_model, batch), batch), -1)
        kl = (logp.exp() * (logp - logq)).sum(-1)
        return {"kl_to_reference": (kl.sum(), float(kl.numel()))}

    return extra


def main(cfg):
    acc = make_accelerator(cfg)
    spec, params = resolve_loss(cfg, ("paired", "unpaired"))
    check_data(cfg, spec)  # the rows and weights, before the model is loaded
    model, tokenizer = load_policy(cfg.model)
    extra = None
    if cfg.data.eval:
        # The frozen reference, kept for evaluation only (None with LoRA: the base, adapter disabled).
        reference = frozen_reference(cfg.model, cfg.reference, acc.device)
        extra = token_kl_extra(reference)
    return run(cfg, spec, params, model, tokenizer, CompletionLogProbs(model), acc, eval_extra=extra)


RECIPES.register("preference", Recipe(main, RunConfig))
