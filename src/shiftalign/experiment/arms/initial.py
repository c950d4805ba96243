"""``initial``: the starting policy as it is; every other arm's win rate and KL are against it."""

from __future__ import annotations

from dataclasses import dataclass

from .spec import ArmKind, ArmResult, register


@dataclass
class InitialOptions:
    def role(self) -> str:
        return "reference"


def run(ctx, name: str, opts: InitialOptions) -> ArmResult:
    return ArmResult(model=ctx.cfg.model.path)  # as configured ("default" stays "default": no machine path)


register(ArmKind("initial", InitialOptions, run))
