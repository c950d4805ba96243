"""The loss spec and the registry of losses, apart from the package so that a loss file can register
itself without importing the package that imports it (see ``losses/__init__.py`` for what a spec declares)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..registry import Registry


@dataclass(frozen=True)
class LossSpec:
    name: str
    compute: Callable  # (out: dict, params) -> (loss (B,), metrics: dict[str, (B,)])
    params: type  # dataclass of this loss's own knobs
    kind: str  # paired | unpaired | sft | reward
    needs_reference: bool
    step_statistic: Callable | None = None  # (out) -> (B,) values averaged over the step into out["step_mean"]


LOSSES: Registry[LossSpec] = Registry("loss")


def register(spec: LossSpec) -> LossSpec:
    return LOSSES.register(spec.name, spec)


def pairwise_metrics(chosen_rewards, rejected_rewards) -> dict:
    """Per-example implicit rewards, margin and accuracy, detached."""
    c, r = chosen_rewards.detach(), rejected_rewards.detach()
    return {"rewards/chosen": c, "rewards/rejected": r, "rewards/margin": c - r, "accuracy": (c > r).float()}
