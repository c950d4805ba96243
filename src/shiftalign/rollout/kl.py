"""The evaluation's KL to a baseline, read from the logits the samples were drawn from.

``recipes.evaluate`` reports KL(pi_T || base_T) of the two sampling distributions: per sample, the sum over
its response positions of the exact KL between the tempered next-token distributions (``ops.kl``). Its
terms need both models' full-vocabulary logits at every response position. The decode loop has the
policy's at hand when it draws each token (``decode(keep_logits=True)``), so only the baseline needs a
forward: one pass over the batch's samples, the samples of a prompt as branches of one row (the prompt
computed once, tree attention as in training). That replaces a forward of the policy over every sample
(BENCHMARKS.md, "Evaluating one policy: where the time goes").
"""

from __future__ import annotations

import torch

from ..data.batching import collate
from ..data.tokenize import Tokenized
from ..ops.kl import tempered_token_kl
from ..ops.logprobs import backbone_hidden, response_logits, sum_by_branch


@torch.inference_mode()
def add_kl(base, pad_id: int, prompt_ids: list[list[int]], results: list[list[dict]], temperature: float,
           branches_per_forward: int = 16) -> None:
    """Sets ``kl`` on every sample dict of ``results`` (``decode``'s output, one list per prompt, made with
    ``keep_logits``) and drops its ``logits``. ``temperature``: the sampling temperature (1 when greedy)."""
    device = next(base.parameters()).device
    step = max(1, branches_per_forward // max(1, len(results[0])))
    for s in range(0, len(prompt_ids), step):
        chunk = range(s, min(s + step, len(prompt_ids)))
        items = [Tokenized(i, str(i), prompt_ids[i], [r["completion_ids"] for r in results[i]]) for i in chunk]
        batch = {k: v.to(device) for k, v in collate(items, pad_id).items()}
        base_logits = response_logits(base, backbone_hidden(base, batch), batch)
        policy_logits = torch.cat([r["logits"] for i in chunk for r in results[i]]).to(device)
        kl = sum_by_branch(tempered_token_kl(policy_logits, base_logits, temperature), batch).double().cpu()
        for b, i in enumerate(chunk):
            for j, r in enumerate(results[i]):
                r["kl"] = float(kl[b, j])
                del r["logits"]
