"""One experiment's run record, built whole by ``experiment.engine`` and handed to the results and the
report: the parsed arms with their roles, every replicate's result, the evaluation, the stage records and
the reward models. Everything the rows and the verdict read is here; nothing is parsed again."""

from __future__ import annotations

from dataclasses import dataclass, field

from .arms import ArmResult
from .config import Arm, ExperimentConfig
from .seeds import replicate_name


@dataclass
class ExperimentRun:
    cfg: ExperimentConfig
    arms: list[Arm]  # the arms run, in config order (typed options, roles)
    results: dict[str, ArmResult]  # replicate name -> result
    evaluation: dict  # evaluate/evaluation.json
    stages: list[dict] = field(default_factory=list)  # one record per stage: {stage, seconds, ...}
    data: dict = field(default_factory=dict)  # the data stage's record
    reward_models: dict = field(default_factory=dict)  # name -> accuracies, shift cost
    calibration: dict | None = None  # the lr_calibration stage's record
    selection: dict | None = None  # the selection stage's record: the candidates' gold-free evidence (None: not run)

    @property
    def baseline(self) -> str:
        return self.cfg.baseline_arm

    @property
    def initial(self) -> str:
        return next(a.name for a in self.arms if a.kind == "initial")

    @property
    def gold_name(self) -> str:
        gold = self.evaluation["gold"]
        return gold.get("name", "gold") if isinstance(gold, dict) else str(gold)

    def replicates(self, arm: Arm) -> list[str]:
        """The arm's replicate names that ran (``arm``, ``arm@1``, ...)."""
        return [n for n in (replicate_name(arm.name, k) for k in range(arm.seeds)) if n in self.results]

    def evaluated(self, arm: Arm) -> list[str]:
        """The arm's replicates that have an evaluated policy."""
        return [n for n in self.replicates(arm) if n in self.evaluation["policies"]]

    def oracle_of(self, arm: Arm) -> str | None:
        """The oracle the arm's gap recovery divides by: its own, else the experiment's."""
        return arm.oracle or self.cfg.oracle_arm

    def seconds(self, stage: str) -> float | None:
        return next((r["seconds"] for r in self.stages if r["stage"] == stage), None)
