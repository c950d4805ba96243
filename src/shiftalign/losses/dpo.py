"""DPO and cDPO (conservative DPO, label smoothing).

Rafailov et al., 2023, "Direct Preference Optimization", Eq. 7:

    h = beta * [(log pi(y+|x) - log pi_ref(y+|x)) - (log pi(y-|x) - log pi_ref(y-|x))]
    loss = -log sigmoid(h)

cDPO (Mitchell, 2023, "A note on DPO with noisy preferences") assumes labels flipped with
probability eps:  loss = -(1 - eps) log sigmoid(h) - eps log sigmoid(-h).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .spec import LossSpec, pairwise_metrics, register


@dataclass
class DPOParams:
    beta: float = 0.1
    label_smoothing: float = 0.0  # eps of cDPO; 0 is plain DPO


def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
             beta: float = 0.1, label_smoothing: float = 0.0) -> tuple[torch.Tensor, dict]:
    chosen = beta * (policy_chosen_logps - ref_chosen_logps)
    rejected = beta * (policy_rejected_logps - ref_rejected_logps)
    h = chosen - rejected
    loss = -(1 - label_smoothing) * F.logsigmoid(h) - label_smoothing * F.logsigmoid(-h)
    return loss, pairwise_metrics(chosen, rejected)


def compute(out: dict, p: DPOParams):
    lp, ref = out["logps"], out["ref_logps"]
    return dpo_loss(lp[:, 0], lp[:, 1], ref[:, 0], ref[:, 1], p.beta, p.label_smoothing)


register(LossSpec("dpo", compute, DPOParams, kind="paired", needs_reference=True))
