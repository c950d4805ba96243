"""The RL algorithm spec, its registry and the pieces the algorithms share (the clipped surrogate,
grouping by prompt), apart from the package so that an algorithm file can register itself without
importing the package that imports it."""

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
