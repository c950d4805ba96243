"""PPO for language models: token-level rewards, value head, GAE, clipped policy and value losses.

Ziegler et al., 2019, "Fine-Tuning Language Models from Human Preferences" (KL in the reward) and
Ouyang et al., 2022, Eq. 2; PPO objective from Schulman et al., 2017, "Proximal Policy Optimization
Algorithms", Eq. 7 and 9:

    r_t = -beta * kl_t  (+ score on the last token),     A = GAE(r, V; gamma, lambda), whitened
                                                         (mean and variance weighted by the prompt weights)
    L   = max(-A ratio, -A clip(ratio, 1 +- eps))  +  c_v * 1/2 max((V - R)^2, (V_clip - R)^2)  -  c_e * H
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..ops.rl import gae, masked_mean, whiten
from .spec import RLAlgoSpec, clipped_policy_loss, register


@dataclass
class PPOParams:
    gamma: float = 1.0
    lam: float = 0.95
    clip: float = 0.2
    value_clip: float = 0.2
    value_coef: float = 0.1
    entropy_coef: float = 0.0
    whiten_advantages: bool = True


def advantages(roll: dict, p: PPOParams, kl_coef: float) -> dict:
    mask = roll["mask"]
    rewards = -kl_coef * roll["kl"] * mask
    last = (mask.sum(1).long() - 1).clamp(min=0)
    rewards[torch.arange(len(last), device=last.device), last] += roll["scores"]
    adv, ret = gae(rewards, roll["values_old"], mask, p.gamma, p.lam)
    if p.whiten_advantages:
        adv = whiten(adv, mask * roll["weights"][:, None]) * mask  # statistics under the prompt weights
    return {"advantages": adv, "returns": ret}


def loss(new: dict, roll: dict, p: PPOParams, kl_coef: float):
    mask, adv = roll["mask"], roll["advantages"]
    pg, clipfrac = clipped_policy_loss(new["logps"], roll["logps_old"], adv, mask, p.clip)
    v, v_old, ret = new["values"], roll["values_old"], roll["returns"]
    v_clip = v_old + (v - v_old).clamp(-p.value_clip, p.value_clip)
    vf = 0.5 * torch.maximum((v - ret) ** 2, (v_clip - ret) ** 2)
    vf_loss = masked_mean(vf, mask, dim=1)
    total = pg + p.value_coef * vf_loss
    if p.entropy_coef:  # the entropy is computed only when it enters the loss
        total = total - p.entropy_coef * masked_mean(new["entropy"], mask, dim=1)
    var = masked_mean((ret - masked_mean(ret, mask)) ** 2, mask)
    explained = 1 - masked_mean((ret - v.detach()) ** 2, mask) / var.clamp(min=1e-8)
    return total, {"clip_fraction": clipfrac, "value_loss": vf_loss.mean().item(),
                   "explained_variance": explained.item(), "policy_loss": pg.mean().item()}


register(RLAlgoSpec("ppo", PPOParams, advantages, loss, needs_value=True))
