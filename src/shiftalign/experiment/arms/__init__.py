"""Arm kinds, registered by name like losses: each is one module with an options dataclass (the arm's
keys in the config) and a ``run(ctx, name, options) -> ArmResult``.

    initial  the starting policy, untouched (the reference point of win rate and KL)
    dpo      DPO-family training on the source pairs, optionally density-ratio weighted
             (any estimator of ``reweight``) or weighted in the loop by the policy-likelihood ratio
    pseudo   rounds of sample -> label -> DPO on the policy's own target samples, labelled by the
             reward model, an LLM judge, or the gold scorer (the oracle)
    rl       PPO / RLOO / GRPO against the experiment's reward model

A new kind: a module here that calls :func:`register`, imported at the bottom of this file, and a test.
An options dataclass may declare the arm's role with a ``role()`` method (:func:`arm_role`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ...registry import Registry


@dataclass
class ArmResult:
    model: str | None  # the arm's final policy (a path or "default"); None when the arm produced none
    failed: str | None = None  # why there is no model, shown in the results instead of numbers
    diagnostics: dict = field(default_factory=dict)  # e.g. ess_fraction, domain_auc_before/after, label_accuracy
    files: dict = field(default_factory=dict)  # what later arms may reuse, e.g. {"weights": path}


@dataclass(frozen=True)
class ArmKind:
    name: str
    options: type
    run: Callable  # (ctx: experiment.context.Context, name: str, options) -> ArmResult


ARMS: Registry[ArmKind] = Registry("arm kind")

ROLES = ("method", "control", "oracle", "reference")


def arm_refs(options) -> list[str]:
    """The earlier arms an arm builds on (a warm start, weights, a reward model), as its options declare
    with ``arm_refs()``; none by default."""
    return list(options.arm_refs()) if hasattr(options, "arm_refs") else []


def arm_role(options) -> str:
    """What an arm is for in the results: ``method`` (the default; the verdict picks the best of these),
    ``control`` (e.g. random labels, or source-only DPO trained longer: training without information
    about the target, read against the methods), ``oracle`` (gold labels of the target: the ceiling the
    gap-recovery ratio divides by) or ``reference`` (the initial policy), as its options declare with
    ``role()``."""
    role = options.role() if hasattr(options, "role") else "method"
    if role not in ROLES:
        raise ValueError(f"arm role must be one of {ROLES}, got {role!r}")
    return role


def register(kind: ArmKind) -> ArmKind:
    return ARMS.register(kind.name, kind)


from . import dpo, initial, pseudo, rl  # noqa: E402,F401  (registration)
