"""``dpo``: a DPO-family loss (the experiment's ``dpo_loss``) on the source pairs from the initial
policy. Optionally weighted toward the target domain:

- ``estimator``: density-ratio weights of the source pairs toward the initial policy's target samples
  (``shiftalign weights fit`` with any estimator of ``reweight.ESTIMATORS``, stabilised by the
  experiment's ``stabilise`` with this arm's overrides); the loss is then
  sum_i w_i l_i / sum_i w_i (importance-weighted empirical risk, Shimodaira, 2000, Eq. 4.1);
- ``policy_ratio``: per-pair weights from the current policy's likelihood of the pair, in the loop
  (``reweight.policy_ratio``, e.g. WPO: Zhou et al., 2024).
Diagnostics: ESS/N of the weights used, domain-classifier AUC before and after weighting.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

from ...config import PolicyRatioConfig, TrainConfig, from_dict
from ...errors import ConfigError
from ...io import read_jsonl
from ...recipes.weights import FittedWeights, WeightsConfig
from ...recipes.weights import main as weights_main
from ...reweight import ESTIMATORS
from ...reweight.pairs import MODES
from ...reweight.stabilize import StabiliserConfig
from .spec import AddedOptions, ArmKind, ArmResult, register, snapshot_points


@dataclass
class DPOOptions(AddedOptions):
    estimator: dict | None = None  # density-ratio weights from this estimator: {name, <its parameters>}
    stabilise: StabiliserConfig = field(default_factory=StabiliserConfig)  # the experiment's, with this arm's overrides
    pair_mode: str | None = None  # prompt- or pair-level weights; the experiment's pair_mode unless set
    policy_ratio: PolicyRatioConfig | None = None  # in-loop policy-likelihood-ratio weights (reweight.policy_ratio)
    train: TrainConfig = field(default_factory=TrainConfig)  # the experiment's dpo_train, with this arm's overrides
    # Multiplies the arm's learning rate (the experiment's, calibrated when lr_calibration is set, or the arm's own
    # train.lr): e.g. source-only DPO pushed further along the gold-against-KL frontier, the same on every gold.
    lr_scale: float = 1.0

    INHERITS: ClassVar[dict] = {"stabilise": "stabilise", "pair_mode": "pair_mode", "train": "dpo_train"}
    ADDED: ClassVar[dict] = {"lr_scale": 1.0}  # options added after runs were made, with their defaults

    def role(self) -> str:
        """Unweighted source-only DPO uses nothing of the target: beside the baseline (e.g. trained longer)
        it is a control, what training alone does; with weights toward the target it is a method."""
        return "method" if self.estimator or self.policy_ratio is not None else "control"

    def source_only(self) -> bool:
        return self.estimator is None and self.policy_ratio is None

    def __post_init__(self):
        if self.estimator is not None:
            check_estimator(self.estimator, "estimator")
        if self.pair_mode is not None and self.pair_mode not in MODES:
            raise ConfigError(f"pair_mode: expected one of {', '.join(MODES)}, got {self.pair_mode!r}")
        if not self.lr_scale > 0:
            raise ConfigError(f"lr_scale: expected a number > 0, got {self.lr_scale!r}")


def check_estimator(estimator: dict, where: str) -> None:
    """An estimator mapping names a registered estimator and only its parameters (``recipes.weights``
    reads it into that estimator's parameters when it fits)."""
    if "name" not in estimator:
        raise ConfigError(f"{where}: expected a mapping with a name, e.g. {{name: classifier}}")
    knobs = dict(estimator)
    from_dict(ESTIMATORS.get(knobs.pop("name")).params, knobs, where)


def fit_weights(ctx, name: str, estimator: dict, stabilise: StabiliserConfig, pair_mode: str) -> FittedWeights:
    """Density-ratio weights of the source pairs toward the shared target samples, with the
    diagnostics an arm reports."""
    wc = WeightsConfig(source=ctx.data.source_pairs, target=ctx.samples, output_dir=str(ctx.root / "weights" / name),
                       pair_mode=pair_mode, features=ctx.cfg.features, estimator=dict(estimator), stabilise=stabilise)
    fitted = weights_main(wc)
    keep = ("ess_fraction", "ess_fraction_raw", "temper", "largest_share", "domain_auc_before", "domain_auc_after")
    return replace(fitted, diagnostics={k: fitted.diagnostics.get(k) for k in keep})


def run(ctx, name: str, opts: DPOOptions) -> ArmResult:
    extra, diagnostics = {}, {}
    if opts.estimator:
        fitted = fit_weights(ctx, name, opts.estimator, opts.stabilise, opts.pair_mode)
        extra["weights"], diagnostics = fitted.file, fitted.diagnostics
    if opts.policy_ratio is not None:
        extra["policy_ratio"] = opts.policy_ratio
    out = ctx.root / name
    train = replace(opts.train, lr=opts.train.lr * opts.lr_scale)
    res = ctx.train(ctx.run_config("preference", out, ctx.data.source_pairs, train, ctx.cfg.dpo_loss, **extra))
    diagnostics.update(steps=res.steps, final_loss=res.train.get("loss"))
    if opts.policy_ratio is not None:  # the ESS of the weights the steps actually used
        ess = [m["weight_ess_fraction"] for m in _metrics(out) if "weight_ess_fraction" in m]
        diagnostics["ess_fraction"] = sum(ess) / len(ess) if ess else None
    return ArmResult(model=res.model, diagnostics=diagnostics,
                     files={"weights": extra["weights"]} if "weights" in extra else {}, points=snapshot_points(out))


def _metrics(run_dir: Path) -> list[dict]:
    f = run_dir / "metrics.jsonl"
    return read_jsonl(f) if f.exists() else []


register(ArmKind("dpo", DPOOptions, run))
