"""Arm kinds, registered by name like losses: each is one module with an options dataclass (the arm's
keys in the config) and a ``run(ctx, name, options) -> ArmResult``.

    initial  the starting policy, untouched (the reference point of win rate and KL)
    dpo      DPO-family training on the source pairs, optionally density-ratio weighted
             (any estimator of ``reweight``) or weighted in the loop by the policy-likelihood ratio
    pseudo   rounds of sample -> label -> DPO on the policy's own target samples, labelled by the
             reward model, an LLM judge, or the gold scorer (the oracle)
    rl       PPO / RLOO / GRPO against the experiment's reward model

A new kind: a module here that calls :func:`register` (from ``spec``, the only module of this package it
imports), imported below, and a test.
An options dataclass may declare the arm's role with a ``role()`` method (:func:`arm_role`).
"""

from __future__ import annotations

from . import dpo, initial, pseudo, rl  # noqa: F401  (registration)
from .spec import ARMS, ROLES, ArmKind, ArmResult, arm_refs, arm_role, register, source_only, start_arm

__all__ = ["ARMS", "ROLES", "ArmKind", "ArmResult", "arm_refs", "arm_role", "register", "source_only", "start_arm"]
