"""Supervised fine-tuning: per-example token-mean negative log-likelihood of the response,

    loss_i = -(1/|y_i|) sum_t log pi(y_i,t | x_i, y_i,<t)

(prompt tokens are masked: only response tokens, EOS included, count). The loop's weighted mean
over examples then gives every example equal say, whatever its length.
"""

from __future__ import annotations

from dataclasses import dataclass

from .spec import LossSpec, register


@dataclass
class SFTParams:
    pass


def sft_loss(policy_logps, lengths):
    nll = -policy_logps / lengths
    return nll, {"nll": nll.detach(), "tokens": lengths.detach()}


def compute(out: dict, p: SFTParams):
    return sft_loss(out["logps"][:, 0], out["lengths"][:, 0])


register(LossSpec("sft", compute, SFTParams, kind="sft", needs_reference=False))
