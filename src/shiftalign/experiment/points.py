"""The earlier points of an arm's training trajectory, evaluated in the arm's own stage.

With ``dpo_train.snapshots`` (fractions of each training run's steps) every DPO-family run saves its model at
those steps; an arm lists them, with the end of each round but its last, as its ``points``
(``ArmResult.points``). Right after the arm has trained, each point is evaluated exactly as the final
policies are (the held-out prompts, the evaluation's sampling, the gold scorer, the exact KL to the initial
policy: ``recipes.evaluate``, in ``<output_dir>/points``, where the initial policy's samples are drawn once
for every arm), its per-prompt gold and KL are kept in the arm's stage record, and a snapshot's weights are
deleted (a 135M model is about half a gigabyte). The points and the final policy make the arm's
gold-against-KL curve (``experiment.frontier``).
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from ..recipes.evaluate import main as evaluate_main

INITIAL = "initial policy"  # the name the initial policy has in the points' evaluation


def point_name(name: str, label: str) -> str:
    """The name point ``label`` of replicate ``name`` has in the points' evaluation (and its samples' file)."""
    return f"{name} {label}"


def evaluate_points(ctx, name: str, points: list[dict]) -> list[dict]:
    """``points`` ({label, model}) of replicate ``name`` evaluated: {label, gold_per_prompt, kl_per_prompt,
    gold_mean, kl_to_baseline}, in the same order; the snapshots' weights are deleted afterwards."""
    if not points:
        return []
    cfg = ctx.cfg
    policies = {INITIAL: cfg.model.path, **{point_name(name, p["label"]): p["model"] for p in points}}
    ec = replace(cfg.evaluate, prompts=ctx.data.eval_prompts, output_dir=str(ctx.root / "points"), policies=policies,
                 baseline=INITIAL, compare_to=INITIAL, reward_model=None, gold=dict(cfg.gold),
                 wrap_text_as_chat=cfg.wrap_text_as_chat, progress=cfg.progress)
    result = evaluate_main(ec)["policies"]
    keep = ("gold_per_prompt", "kl_per_prompt", "gold_mean", "kl_to_baseline")
    evaluated = [{"label": p["label"], **{k: result[point_name(name, p["label"])][k] for k in keep}} for p in points]
    for p in points:
        drop_snapshot(Path(p["model"]))
    return evaluated


def drop_snapshot(model: Path) -> None:
    """A snapshot's weights, once evaluated; a round's final model (not a snapshot) stays."""
    if model.parent.name == "snapshots" and model.is_dir():
        shutil.rmtree(model)
