"""The learning rate of every DPO-family arm, calibrated to a KL budget on source-only DPO (no gold read).

The same optimiser budget moves a policy very different distances on different preference data: in the
default profile, 40 steps of source-only DPO at lr 3e-5 end 4.9 nats from the initial policy on VADER's
pairs and 31 on plain_language's (BENCHMARKS.md). The reward model and its shift cost are checked on the
initial policy's samples, and the iterated arms start from source-only DPO's policy, so a policy that far
out is labelled where the reward model was never checked. Reward over-optimisation is charted against
the KL to the initial policy for the same reason (Gao et al., 2023, "Scaling Laws for Reward Model
Overoptimization").

``lr_calibration: {candidates, max_kl, prompts}``: source-only DPO with the experiment's settings
(``dpo_train``, ``dpo_loss``, the source pairs, its seed) is trained at each candidate learning rate,
largest first; its KL to the initial policy is measured on the first ``prompts`` target prompts sampled as
the pseudo-label arms sample them (``policy_sampling``): the exact per-token KL of the tempered next-token
distributions summed over each response (``ops.kl``), averaged over samples. The first candidate within
``max_kl`` nats becomes ``dpo_train.lr`` for every arm (an arm's own ``train.lr`` still wins); when none
is, the smallest is used and the result says so. Only source pairs, target prompts and the two policies
are read, so the rule is the same whatever the gold reward.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import ConfigError
from ..io import read_jsonl, write_json_atomic, write_jsonl_atomic
from ..log import log


@dataclass
class LRCalibration:
    candidates: list = field(default_factory=lambda: [3.0e-5, 1.0e-5, 3.0e-6])  # tried largest first
    max_kl: float = 10.0  # nats per response: source-only DPO's KL to the initial policy may not exceed this
    prompts: int = 32  # the first this many target prompts, sampled policy_sampling.n times each

    def __post_init__(self):
        c = self.candidates
        if not isinstance(c, list) or not c or any(isinstance(x, bool) or not isinstance(x, (int, float)) or x <= 0
                                                   for x in c):
            raise ConfigError(f"lr_calibration.candidates: expected a non-empty list of learning rates > 0, got {c!r}")
        if not self.max_kl > 0:
            raise ConfigError(f"lr_calibration.max_kl: expected a KL budget > 0 nats, got {self.max_kl!r}")
        if isinstance(self.prompts, bool) or not isinstance(self.prompts, int) or self.prompts < 1:
            raise ConfigError(f"lr_calibration.prompts: expected a whole number >= 1, got {self.prompts!r}")


def policy_kl(ctx, model: str, prompts: Path, out: Path) -> float:
    """Mean over samples of ``model`` on ``prompts`` (drawn as round 1 of the pseudo-label arms draws them,
    ``Context.target_samples``) of the sequence KL to the initial policy at the sampling temperature."""
    from ..recipes.evaluate import kl_temperature, sequence_kls

    cfg = ctx.cfg
    rows = read_jsonl(ctx.target_samples(model, out, prompts=str(prompts)))
    kls = sequence_kls(model, cfg.model.path, rows, cfg.wrap_text_as_chat, kl_temperature(cfg.policy_sampling))
    return float(kls.mean())


def calibrate_lr(ctx, spec: LRCalibration, out: Path) -> dict:
    """Try the candidates largest first (each one's KL kept in ``out/lr_<x>/kl.json``, so a rerun goes on
    from the next); the policies over the budget are deleted once measured, the chosen one is kept for
    source-only DPO to reuse. Returns the chosen lr and every try."""
    cfg = ctx.cfg
    prompts = out / "prompts.jsonl"
    write_jsonl_atomic(prompts, read_jsonl(ctx.data.target_prompts)[:spec.prompts])
    tried = []
    for lr in sorted(spec.candidates, reverse=True):
        run = out / f"lr_{lr:g}"
        measured = run / "kl.json"
        if measured.exists():
            kl = json.loads(measured.read_text())["kl"]
        else:
            train = replace(cfg.dpo_train, lr=lr)
            res = ctx.train(ctx.run_config("preference", run / "train", ctx.data.source_pairs, train, cfg.dpo_loss))
            kl = policy_kl(ctx, res.model, prompts, run / "samples.jsonl")
            write_json_atomic(measured, {"lr": lr, "kl": kl})
            shutil.rmtree(run / "train" / "checkpoints", ignore_errors=True)
            if kl > spec.max_kl:  # the chosen rate's run is source-only DPO's first replicate (recipes.reuse)
                shutil.rmtree(run / "train" / "model", ignore_errors=True)
                shutil.rmtree(run / "train" / "snapshots", ignore_errors=True)
        tried.append({"lr": lr, "kl": kl})
        log(f"lr calibration: source-only DPO at lr {lr:g} ends {kl:.2f} nats from the initial policy "
            f"(budget {spec.max_kl:g})")
        if kl <= spec.max_kl:
            break
    within = tried[-1]["kl"] <= spec.max_kl
    return {"lr": tried[-1]["lr"], "within_budget": within, "max_kl": spec.max_kl, "prompts": spec.prompts,
            "tried": tried}


def describe(cal: dict) -> str:
    """One sentence for the report."""
    tries = ", ".join(f"{t['kl']:.1f} nats at lr {t['lr']:g}" for t in cal["tried"])
    how = ("the largest candidate within the budget" if cal["within_budget"]
           else "no candidate was within the budget, so the smallest")
    return (f"Learning rate {cal['lr']:g}, calibrated without the gold reward: source-only DPO's KL to the initial "
            f"policy on {cal['prompts']} target prompts was {tries} (budget {cal['max_kl']:g} nats): {how}.")
