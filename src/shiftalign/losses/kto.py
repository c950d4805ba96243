"""KTO: Kahneman-Tversky optimisation on unpaired desirable / undesirable responses.

Ethayarajh et al., 2024, "KTO: Model Alignment as Prospect Theoretic Optimization", Eq. 8:

    r(x, y) = log pi(y|x) - log pi_ref(y|x)
    z0      = max(0, mean_j [log pi(y_j'|x_j) - log pi_ref(y_j'|x_j)])   (mismatched pairs, no gradient)
    loss    = lambda_D (1 - sigmoid(beta (r - z0)))   for desirable y
              lambda_U (1 - sigmoid(beta (z0 - r)))   for undesirable y

z0 is estimated on the batch from the mismatched responses (column 1 of ``logps``), as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import LossSpec, register


@dataclass
class KTOParams:
    beta: float = 0.1
    desirable_weight: float = 1.0
    undesirable_weight: float = 1.0


def kto_loss(policy_logps, ref_logps, policy_kl_logps, ref_kl_logps, labels,
             beta: float = 0.1, desirable_weight: float = 1.0, undesirable_weight: float = 1.0):
    z0 = (policy_kl_logps - ref_kl_logps).mean().clamp(min=0).detach()
    r = policy_logps - ref_logps
    desirable = labels.bool()
    loss = torch.where(desirable, desirable_weight * (1 - torch.sigmoid(beta * (r - z0))),
                       undesirable_weight * (1 - torch.sigmoid(beta * (z0 - r))))
    metrics = {"rewards/implicit": (beta * r).detach(), "kl_reference_point": z0.expand_as(r),
               "desirable": desirable.float()}
    return loss, metrics


def compute(out: dict, p: KTOParams):
    lp, ref = out["logps"], out["ref_logps"]
    return kto_loss(lp[:, 0], ref[:, 0], lp[:, 1], ref[:, 1], out["labels"], p.beta, p.desirable_weight,
                    p.undesirable_weight)


register(LossSpec("kto", compute, KTOParams, kind="unpaired", needs_reference=True, n_branches=2))
