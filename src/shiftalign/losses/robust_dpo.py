"""Robust DPO: an unbiased DPO loss under preference labels flipped with known rate eps.

Chowdhury et al., 2024, "Provably Robust DPO: Aligning Language Models with Noisy Feedback", Eq. 10:

    loss = [(1 - eps) * (-log sigmoid(h)) - eps * (-log sigmoid(-h))] / (1 - 2 eps)

with h the DPO logit (see ``dpo``). Requires eps < 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from .spec import LossSpec, pairwise_metrics, register


@dataclass
class RobustDPOParams:
    beta: float = 0.1
    label_smoothing: float = 0.1  # eps, the assumed label-flip rate, < 0.5


def robust_dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
                    beta: float = 0.1, label_smoothing: float = 0.1):
    if not 0 <= label_smoothing < 0.5:
        raise ValueError("robust DPO needs 0 <= label_smoothing < 0.5")
    chosen = beta * (policy_chosen_logps - ref_chosen_logps)
    rejected = beta * (policy_rejected_logps - ref_rejected_logps)
    h = chosen - rejected
    eps = label_smoothing
    loss = ((1 - eps) * -F.logsigmoid(h) - eps * -F.logsigmoid(-h)) / (1 - 2 * eps)
    return loss, pairwise_metrics(chosen, rejected)


def compute(out: dict, p: RobustDPOParams):
    lp, ref = out["logps"], out["ref_logps"]
    return robust_dpo_loss(lp[:, 0], lp[:, 1], ref[:, 0], ref[:, 1], p.beta, p.label_smoothing)


register(LossSpec("robust_dpo", compute, RobustDPOParams, kind="paired", needs_reference=True))
