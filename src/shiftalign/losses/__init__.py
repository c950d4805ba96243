"""Losses: one objective per file, each registered in :data:`LOSSES` by name.

A loss is pure: tensors in, a per-example loss ``(B,)`` and a dict of per-example metrics out; no
model calls, no reduction (the training loop reduces with per-example weights). A loss declares
what it needs as attributes of its :class:`LossSpec` instead of being recognised by name:

- ``kind``: the rows it trains on: ``paired`` (prompt, chosen, rejected), ``unpaired`` (prompt,
  completion, label; KTO), ``sft`` (prompt, completion), and ``reward`` (paired rows, scored by a
  reward model instead of log-probs);
- ``needs_reference``: whether reference-model log-probs must be provided (``ref_logps``);
- ``step_statistic``: for a loss that needs a quantity estimated over the whole optimiser step
  before any gradient (KTO's reference point), a function ``out -> (B,)`` whose mean over every
  row of the step (all micro-batches, all processes) the loop passes back as ``out["step_mean"]``.

``compute(out, params)`` receives ``out`` with ``logps (B, k)`` and ``lengths (B, k)`` (or
``rewards (B, k)`` for reward losses), ``ref_logps (B, k)`` when needed and ``labels (B,)`` for
unpaired rows; column 0 is chosen (or the completion), column 1 rejected (or KTO's mismatched response).
"""

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
    n_branches: int  # responses per row fed to the model
    step_statistic: Callable | None = None  # (out) -> (B,) values averaged over the step into out["step_mean"]


LOSSES: Registry[LossSpec] = Registry("loss")


def register(spec: LossSpec) -> LossSpec:
    return LOSSES.register(spec.name, spec)


def pairwise_metrics(chosen_rewards, rejected_rewards) -> dict:
    """Per-example implicit rewards, margin and accuracy, detached."""
    c, r = chosen_rewards.detach(), rejected_rewards.detach()
    return {"rewards/chosen": c, "rewards/rejected": r, "rewards/margin": c - r, "accuracy": (c > r).float()}


from . import bradley_terry, dpo, ipo, kto, robust_dpo, sft, simpo, slic  # noqa: E402,F401  (registration)
