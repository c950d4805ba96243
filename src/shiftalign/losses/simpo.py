"""SimPO: reference-free preference optimisation with length-normalised rewards and a target margin.

Meng et al., 2024, "SimPO: Simple Preference Optimization with a Reference-Free Reward", Eq. 6:

    loss = -log sigmoid( beta/|y+| log pi(y+|x) - beta/|y-| log pi(y-|x) - gamma )
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from .spec import LossSpec, pairwise_metrics, register


@dataclass
class SimPOParams:
    beta: float = 2.0
    gamma: float = 1.0  # target reward margin


def simpo_loss(policy_chosen_logps, policy_rejected_logps, chosen_lengths, rejected_lengths,
               beta: float = 2.0, gamma: float = 1.0):
    chosen = beta * policy_chosen_logps / chosen_lengths
    rejected = beta * policy_rejected_logps / rejected_lengths
    return -F.logsigmoid(chosen - rejected - gamma), pairwise_metrics(chosen, rejected)


def compute(out: dict, p: SimPOParams):
    lp, n = out["logps"], out["lengths"]
    return simpo_loss(lp[:, 0], lp[:, 1], n[:, 0], n[:, 1], p.beta, p.gamma)


register(LossSpec("simpo", compute, SimPOParams, kind="paired", needs_reference=False))
