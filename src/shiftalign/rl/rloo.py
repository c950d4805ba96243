"""RLOO: REINFORCE with a leave-one-out baseline over the k samples of each prompt, no critic.

Ahmadian et al., 2024, "Back to Basics: Revisiting REINFORCE Style Optimization for Learning from
Human Feedback in LLMs", Eq. 5-6, with the KL penalty in the sequence reward:

    R_i = score_i - beta * sum_t kl_t,     A_i = R_i - 1/(k-1) sum_{j != i} R_j

applied to every token of sample i through the clipped ratio (which is plain REINFORCE with a
single update epoch, where the ratio is 1).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ops.rl import rloo_advantages
from .spec import RLAlgoSpec, by_group, clipped_policy_loss, register


@dataclass
class RLOOParams:
    clip: float = 0.2


def advantages(roll: dict, p: RLOOParams, kl_coef: float) -> dict:
    mask = roll["mask"]
    R = roll["scores"] - kl_coef * (roll["kl"] * mask).sum(1)
    A = rloo_advantages(by_group(R, roll["k"])).reshape(-1)
    return {"advantages": A[:, None] * mask}


def loss(new: dict, roll: dict, p: RLOOParams, kl_coef: float):
    pg, clipfrac = clipped_policy_loss(new["logps"], roll["logps_old"], roll["advantages"], roll["mask"], p.clip)
    return pg, {"clip_fraction": clipfrac, "policy_loss": pg.mean().item()}


register(RLAlgoSpec("rloo", RLOOParams, advantages, loss, needs_value=False, min_samples=2))
