"""KTO: Kahneman-Tversky optimisation on unpaired desirable / undesirable responses.

Ethayarajh et al., 2024, "KTO: Model Alignment as Prospect Theoretic Optimization", Eq. 8:

    r(x, y) = log pi(y|x) - log pi_ref(y|x)
    z0      = max(0, mean_j [log pi(y_j'|x_j) - log pi_ref(y_j'|x_j)])   (mismatched pairs, no gradient)
    loss    = lambda_D (1 - sigmoid(beta (r - z0)))   for desirable y
              lambda_U (1 - sigmoid(beta (z0 - r)))   for undesirable y

Each row carries, as its second branch, the response of a row with another prompt
(``data.tokenize.add_mismatched_branch``: a seeded shuffle that never pairs a prompt with its own
responses). The mean in z0 runs over every row of the optimiser step, on every process: the loop
computes it in a no-gradient pass (``LossSpec.step_statistic``) and hands it over as
``out["step_mean"]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .spec import LossSpec, register


@dataclass
class KTOParams:
    beta: float = 0.1
    desirable_weight: float = 1.0
    undesirable_weight: float = 1.0


def kto_loss(policy_logps, ref_logps, kl_estimate, labels,
             beta: float = 0.1, desirable_weight: float = 1.0, undesirable_weight: float = 1.0):
    """``policy_logps, ref_logps, labels (B,)``; ``kl_estimate`` a scalar: the mean mismatched log-ratio."""
    z0 = torch.as_tensor(kl_estimate, dtype=policy_logps.dtype, device=policy_logps.device).clamp(min=0).detach()
    r = policy_logps - ref_logps
    desirable = labels.bool()
    loss = torch.where(desirable, desirable_weight * (1 - torch.sigmoid(beta * (r - z0))),
                       undesirable_weight * (1 - torch.sigmoid(beta * (z0 - r))))
    metrics = {"rewards/implicit": (beta * r).detach(), "kl_reference_point": z0.expand_as(r),
               "desirable": desirable.float()}
    return loss, metrics


def mismatched_log_ratio(out: dict) -> torch.Tensor:
    """(B,) log pi(y'|x) - log pi_ref(y'|x) of each row's mismatched response (branch 1)."""
    return (out["logps"][:, 1] - out["ref_logps"][:, 1]).detach()


def compute(out: dict, p: KTOParams):
    lp, ref = out["logps"], out["ref_logps"]
    return kto_loss(lp[:, 0], ref[:, 0], out["step_mean"], out["labels"], p.beta, p.desirable_weight,
                    p.undesirable_weight)


register(LossSpec("kto", compute, KTOParams, kind="unpaired", needs_reference=True,
                  step_statistic=mismatched_log_ratio))
