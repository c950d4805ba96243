"""GRPO: group-normalised advantages, clipped ratio, and the KL to the reference in the loss.

Shao et al., 2024, "DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language
Models", Eq. 3-4 (outcome supervision):

    A_i = (score_i - mean(score)) / std(score)   over the k samples of a prompt
    L   = 1/|y_i| sum_t [ max(-A ratio, -A clip(ratio, 1 +- eps)) + beta * k3_t ]

with k3 the unbiased, non-negative KL estimator between the current policy and the reference.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ops.rl import grpo_advantages, kl_k3, masked_mean
from .spec import RLAlgoSpec, by_group, clipped_policy_loss, register


@dataclass
class GRPOParams:
    clip: float = 0.2
    eps: float = 1e-4


def advantages(roll: dict, p: GRPOParams, kl_coef: float) -> dict:
    A = grpo_advantages(by_group(roll["scores"], roll["k"]), p.eps).reshape(-1)
    return {"advantages": A[:, None] * roll["mask"]}


def loss(new: dict, roll: dict, p: GRPOParams, kl_coef: float):
    mask = roll["mask"]
    pg, clipfrac = clipped_policy_loss(new["logps"], roll["logps_old"], roll["advantages"], mask, p.clip)
    kl = masked_mean(kl_k3(new["logps"], roll["ref_logps"]), mask, dim=1)
    return pg + kl_coef * kl, {"clip_fraction": clipfrac, "policy_loss": pg.mean().item(), "kl_in_loss": kl.mean().item()}


register(RLAlgoSpec("grpo", GRPOParams, advantages, loss, needs_value=False, min_samples=2))
