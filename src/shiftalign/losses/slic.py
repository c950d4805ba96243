"""SLiC-HF: sequence likelihood calibration with a rank hinge and a likelihood regulariser.

Zhao et al., 2023, "SLiC-HF: Sequence Likelihood Calibration with Human Feedback", Eq. 1:

    loss = max(0, delta - log pi(y+|x) + log pi(y-|x)) - lambda * log pi(y_ref|x)

Here y_ref is the chosen response and its regulariser is the per-token mean NLL, so lambda does
not depend on response length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .spec import LossSpec, pairwise_metrics, register


@dataclass
class SLiCParams:
    delta: float = 1.0  # hinge margin
    lambda_reg: float = 0.1  # weight of the chosen response's token-mean NLL


def slic_loss(policy_chosen_logps, policy_rejected_logps, chosen_lengths, delta: float = 1.0, lambda_reg: float = 0.1):
    hinge = torch.clamp(delta - policy_chosen_logps + policy_rejected_logps, min=0)
    nll = -policy_chosen_logps / chosen_lengths
    metrics = pairwise_metrics(policy_chosen_logps, policy_rejected_logps)
    metrics["nll"] = nll.detach()
    return hinge + lambda_reg * nll, metrics


def compute(out: dict, p: SLiCParams):
    lp, n = out["logps"], out["lengths"]
    return slic_loss(lp[:, 0], lp[:, 1], n[:, 0], p.delta, p.lambda_reg)


register(LossSpec("slic", compute, SLiCParams, kind="paired", needs_reference=False))
