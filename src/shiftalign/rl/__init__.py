"""Online RL algorithms: one file each, registered in :data:`RL_ALGOS`.

Each algorithm turns a rollout (padded ``(S, L)`` tensors: ``logps_old``, ``ref_logps``, ``mask``,
``values_old``, and ``scores (S,)`` with ``group (S,)`` the prompt of each sample) into advantages,
and a fresh forward pass into a per-sample loss ``(S,)`` plus metrics. ``needs_value`` says whether
the policy carries a value head.
"""

from __future__ import annotations

from . import grpo, ppo, rloo  # noqa: F401  (registration)
from .spec import RL_ALGOS, RLAlgoSpec, by_group, clipped_policy_loss, register  # noqa: F401  (the package's names)
