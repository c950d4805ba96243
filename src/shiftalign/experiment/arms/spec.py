"""What every arm kind shares: the result of an arm, the kind's registration, the registry of kinds,
and the roles and references an arm's options declare. The kinds live one per file beside this one and
import only this module of the package; ``experiment/arms/__init__.py`` imports them to register them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar

from ...registry import Registry


class AddedOptions:
    """Base of a kind's options that gained fields after runs were made: ``ADDED`` names them with their
    defaults, and an arm's stage key leaves such a field out while it is at its default, so the arms that do not
    use it keep the keys of their runs (``experiment.config.written_form`` calls ``key_form``)."""

    ADDED: ClassVar[dict] = {}

    @classmethod
    def key_form(cls, written: dict) -> dict:
        return {k: v for k, v in written.items() if not (k in cls.ADDED and v == cls.ADDED[k])}


def snapshot_points(summary_dir: Path, prefix: str = "") -> list[dict]:
    """The frontier snapshots of a training run (its ``summary.json``) as points {label, model}, labelled
    ``step k/N``."""
    f = Path(summary_dir) / "summary.json"
    summary = json.loads(f.read_text()) if f.is_file() else {}
    steps = summary.get("steps")
    return [{"label": f"{prefix}step {int(Path(p).name.split('-')[1])}/{steps}", "model": p}
            for p in summary.get("snapshots", [])]


@dataclass
class ArmResult:
    model: str | None  # the arm's final policy (a path or "default"); None when the arm produced none
    failed: str | None = None  # why there is no model, shown in the results instead of numbers
    diagnostics: dict = field(default_factory=dict)  # e.g. ess_fraction, domain_auc_before/after, label_accuracy
    files: dict = field(default_factory=dict)  # what later arms may reuse, e.g. {"weights": path}
    # Earlier points of the arm's trajectory, in training order ({label, model}; with the experiment's
    # dpo_train.snapshots): the engine evaluates them in the arm's stage, keeps {label, gold/KL per prompt}
    # and deletes their weights (experiment.frontier).
    points: list[dict] = field(default_factory=list)

    @classmethod
    def from_record(cls, info: dict) -> ArmResult:
        """An arm's result from its stage record (``stages/arm_<name>.json``)."""
        return cls(info["model"], info.get("failed"), info.get("diagnostics", {}), info.get("files", {}),
                   info.get("points", []))


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


def start_arm(options) -> str | None:
    """The earlier arm whose policy this arm's training starts from (a warm start), as its options declare with
    ``start_arm()``; None (the initial policy) by default. Its final point starts the arm's frontier curve."""
    return options.start_arm() if hasattr(options, "start_arm") else None


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


def source_only(options) -> bool:
    """Whether the arm trains on the source pairs alone (no weights, labels or samples of the target): its
    gold-against-KL curve is part of the source-only frontier the methods are compared with at matched KL,
    as its options declare with ``source_only()``; False by default."""
    return bool(options.source_only()) if hasattr(options, "source_only") else False


def register(kind: ArmKind) -> ArmKind:
    return ARMS.register(kind.name, kind)
