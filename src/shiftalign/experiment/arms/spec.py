"""What every arm kind shares: the result of an arm, the kind's registration, the registry of kinds,
and the roles and references an arm's options declare. The kinds live one per file beside this one and
import only this module of the package; ``experiment/arms/__init__.py`` imports them to register them."""

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

    @classmethod
    def from_record(cls, info: dict) -> ArmResult:
        """An arm's result from its stage record (``stages/arm_<name>.json``)."""
        return cls(info["model"], info.get("failed"), info.get("diagnostics", {}), info.get("files", {}))


@dataclass(frozen=True)
class ArmKind:
    name: str
    options: type
    run: Callable  # (ctx: experiment.context.Context, name: str, options) -> ArmResult
    # options: a dataclass of the arm's keys; ``INHERITS`` (option path -> experiment field) names those that
    # start from the experiment's shared settings (experiment.config.resolve_options)


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
