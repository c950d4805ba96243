"""Online RL algorithms: one file each, registered in :data:`RL_ALGOS`.

Each algorithm turns a rollout (padded ``(S, L)`` tensors: ``logps_old``, ``ref_logps``, ``mask``,
``values_old``, and ``scores (S,)`` with ``group (S,)`` the prompt of each sample) into advantages,
and a fresh forward pass into a per-sample loss ``(S,)`` plus metrics. ``needs_value`` says whether
the policy carries a value head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..ops.rl import masked_mean
from ..registry import Registry


@dataclass(frozen=True)
class RLAlgoSpec:
    name: str
    params: type
    advantages: Callable  # (rollout: dict, params, kl_coef: float) -> dict with "advantages" (S, L) [+ "returns"]
    loss: Callable  # (new: dict, rollout: dict, params, kl_coef: float) -> (loss (S,), metrics dict of floats)
    needs_value: bool
    min_samples: int = 1  # samples per prompt the advantage needs (a group baseline needs 2)


RL_ALGOS: Registry[RLAlgoSpec] = Registry("RL algorithm")


def register(spec: RLAlgoSpec) -> RLAlgoSpec:
    return RL_ALGOS.register(spec.name, spec)


def clipped_policy_loss(new_logps, old_logps, adv, mask, clip: float):
    """Per-sample mean over tokens of the PPO clipped surrogate (Schulman et al., 2017, Eq. 7), and the clip fraction."""
    ratio = torch.exp(new_logps - old_logps)
    pg = torch.maximum(-adv * ratio, -adv * ratio.clamp(1 - clip, 1 + clip))
    clipped = ((ratio - 1).abs() > clip).float()
    return masked_mean(pg, mask, dim=1), masked_mean(clipped, mask).item()


def by_group(values: torch.Tensor, k: int) -> torch.Tensor:
    """(S,) -> (P, k), samples ordered prompt by prompt."""
    return values.view(-1, k)


from . import grpo, ppo, rloo  # noqa: E402,F401  (registration)
