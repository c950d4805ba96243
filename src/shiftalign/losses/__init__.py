"""Losses: one objective per file, each registered in :data:`LOSSES` by name.

A loss is pure: tensors in, a per-example loss ``(B,)`` and a dict of per-example metrics out; no
model calls, no reduction (the training loop reduces with per-example weights). A loss declares
what it needs as attributes of its :class:`LossSpec` instead of being recognised by name:

- ``kind``: the rows it trains on: ``paired`` (prompt, chosen, rejected), ``unpaired`` (prompt,
  completion, label; KTO), ``sft`` (prompt, completion), and ``reward`` (paired rows, scored by a
  reward model instead of log-probs); the kind fixes the responses per row, k: 1 for ``sft`` rows, 2 for
  the others;
- ``needs_reference``: whether reference-model log-probs must be provided (``ref_logps``);
- ``step_statistic``: for a loss that needs a quantity estimated over the whole optimiser step
  before any gradient (KTO's reference point), a function ``out -> (B,)`` whose mean over every
  row of the step (all micro-batches, all processes) the loop passes back as ``out["step_mean"]``.

``compute(out, params)`` receives ``out`` with ``logps (B, k)`` and ``lengths (B, k)`` (or
``rewards (B, k)`` for reward losses), ``ref_logps (B, k)`` when needed and ``labels (B,)`` for
unpaired rows; column 0 is chosen (or the completion), column 1 rejected (or KTO's mismatched response).
"""

from __future__ import annotations

from . import bradley_terry, dpo, ipo, kto, robust_dpo, sft, simpo, slic  # noqa: F401  (registration)
from .spec import LOSSES, LossSpec, pairwise_metrics, register  # noqa: F401  (the package's names)
