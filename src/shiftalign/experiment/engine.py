"""``shiftalign experiment CONFIG``: compare alignment methods on a target domain, every stage cached.

Stages, each recorded under ``<output_dir>/stages`` (a rerun continues where it stopped; the
directory is claimed for the shared settings, everything but the arms, see ``rundir``; each arm's stage
is keyed on that arm's own settings and those of the arms it builds on, so adding or changing an arm
in a finished experiment runs that arm and the evaluation again, nothing else; see ``stages``):
1. ``data``            the prompt subsets, and the source pairs: read from a file, or written by a
                       behaviour policy and labelled by the gold scorer with Bradley-Terry noise
                       (``rollout.behaviour``);
   ``lr_calibration``  with ``lr_calibration`` set: the learning rate of every DPO-family arm, the largest
                       candidate at which source-only DPO stays within a KL budget of the initial policy
                       (``experiment.calibrate``; no gold read);
2. ``reward``          a Bradley-Terry reward model on the source pairs (``experiment.rewards``: fine-tuned,
                       or an ensemble of heads on frozen features);
3. ``policy_samples``  the initial policy's samples on the target prompts: the target domain of every
                       density-ratio estimator and round 1 of every pseudo-label arm (shared; an arm
                       warm-started from another arm's policy takes round 1 from ``policy_samples/<arm>/``,
                       drawn once for every arm that starts there, ``Context.samples_of``);
   ``reward_shift``    the reward model's accuracy against gold on held-out source pairs and on pairs of
                       those samples: the shift cost;
4. one stage per arm   in config order (per seed replicate: ``seeds: S`` trains ``arm``, ``arm@1``, ...,
                       ``arm@S-1``); the kinds are registered in ``experiment.arms``; with ``dpo_train.snapshots``
                       the arm's earlier trajectory points are evaluated in its stage and their weights
                       deleted (``experiment.points``);
5. ``evaluate``        on held-out target prompts, by the gold scorer: gold reward with paired-bootstrap
                       95 % intervals against the baseline arm, win rate and KL against the initial
                       policy, the reward model's accuracy on on-policy pairs (``recipes.evaluate``);
6. ``selection``       gold-free selection's evidence: the reward model's member scores and the overlap (ESS/N)
                       of its training responses with the samples of every candidate policy (method and
                       source-only arms' trajectory points and final policies; ``experiment.candidates``), read
                       from the evaluations' samples without gold; the selectors' picks and their regret against
                       the gold-best candidate are computed with the results (``experiment.selection``);
then ``results.json``, ``results.md`` and ``report.html`` (``experiment.results``, ``experiment.report``), from
one ``ExperimentRun`` record (``experiment.run``); methods are also read against the source-only frontier at
matched KL (``experiment.frontier``).
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict, replace
from pathlib import Path

from ..data.load import load_examples
from ..io import read_jsonl, read_text, write_jsonl_atomic
from ..models.features import single_layer
from ..recipes.evaluate import main as evaluate_main
from ..train import checkpoint
from .arms import ARMS, ArmResult, arm_refs
from .calibrate import calibrate_lr
from .candidates import SETTINGS as SELECTION_SETTINGS
from .candidates import candidates, gather
from .config import Arm, ExperimentConfig, parse_arms, rebase, selected_arms
from .context import Context, DataFiles, Setup
from .points import evaluate_points
from .report import write_outputs
from .rewards import shift_cost, train_reward
from .run import ExperimentRun
from .seeds import replicate_name
from .stages import Stages, stage_key


def _rows(path: str, n: int | None) -> list[dict]:
    rows = read_jsonl(path)
    return rows[:n] if n else rows


def validate_inputs(cfg: ExperimentConfig) -> list[Arm]:
    """Config and data checked before anything is written."""
    arms = parse_arms(cfg)
    single_layer(cfg.features)  # the density-ratio features; the reward heads' may name candidate layers
    from ..config import RunConfig
    from ..recipes.common import resolve_loss

    resolve_loss(RunConfig(loss=dict(cfg.dpo_loss)), ("paired", "unpaired"))  # every DPO-family arm's loss
    from ..rollout.backends import SAMPLERS

    SAMPLERS.get(cfg.backend)
    SAMPLERS.get(cfg.evaluate.backend)
    d = cfg.data
    for path in (d.target_prompts, d.eval_prompts) + ((d.source_prompts,) if not d.source_pairs else ()):
        load_examples(path, "prompt")
    for path in (d.source_pairs, d.heldout_pairs):
        if path:
            load_examples(path, "paired")
    from ..rl.scorers import make_scorer

    make_scorer(dict(cfg.gold))  # an unknown scorer or a missing function file stops here
    return arms


def build_data(cfg: ExperimentConfig, root: Path) -> dict:
    d, out = cfg.data, root / "data"
    files = {"target_prompts": str(out / "target_prompts.jsonl"), "eval_prompts": str(out / "eval_prompts.jsonl"),
             "source_pairs": str(out / "source_pairs.jsonl")}
    write_jsonl_atomic(files["target_prompts"], _rows(d.target_prompts, d.n_target))
    write_jsonl_atomic(files["eval_prompts"], _rows(d.eval_prompts, d.n_eval))
    if d.source_pairs:
        pairs = _rows(d.source_pairs, d.n_source)
    else:
        from ..models.load import load_policy
        from ..rl.scorers import make_scorer
        from ..rollout.behaviour import gold_labelled_pairs

        model, tok = load_policy(replace(cfg.model))
        model.eval()
        prompts = [r["prompt"] for r in _rows(d.source_prompts, d.n_source)]
        pairs = gold_labelled_pairs(model, tok, prompts, d.behaviour, make_scorer(dict(cfg.gold)),
                                    random.Random(d.behaviour.seed))
    write_jsonl_atomic(files["source_pairs"], pairs)
    if d.heldout_pairs:
        files["heldout_pairs"] = str(out / "heldout_pairs.jsonl")
        write_jsonl_atomic(files["heldout_pairs"], read_jsonl(d.heldout_pairs))
    info = {**files, "source_pairs_n": len(pairs), "target_prompts_n": len(read_jsonl(files["target_prompts"])),
            "eval_prompts_n": len(read_jsonl(files["eval_prompts"]))}
    if pairs and "gold_chosen" in pairs[0]:
        from ..rollout.behaviour import label_agreement

        info["source_label_agreement"] = label_agreement(pairs)
    return info


def shared_settings(cfg: ExperimentConfig) -> ExperimentConfig:
    """What every stage depends on: the config without its arms (and the names of the baseline and
    oracle arms, which only the results read, and the selection of arms and replicates to run now). The experiment's
    directory is claimed for this."""
    return replace(cfg, arms=[], baseline_arm="", oracle_arm=None, only_arms=None, max_seeds=None)


def arm_keys(arms: list[Arm]) -> dict[str, str]:
    """Replicate name -> the key of its stage: the arm's kind and options (defaults filled in), its seed
    replicate, and the keys of the arms it builds on (``arm_refs``: a warm start, weights, a reward model),
    replicate for replicate as ``Context.arm`` resolves them."""
    from .config import written_form

    by_name, keys = {a.name: a for a in arms}, {}
    for arm in arms:
        for k in range(arm.seeds):
            refs = {}
            for ref in arm_refs(arm.options):
                refs[ref] = keys[replicate_name(ref, k) if k < by_name[ref].seeds else ref]
            keys[replicate_name(arm.name, k)] = stage_key({"kind": arm.kind, "options": written_form(ARMS.get(arm.kind).options, arm.written),
                                                           "replicate": k, "builds_on": refs})
    return keys


def drop_checkpoints(run_dir: Path) -> None:
    """Checkpoints of a finished arm serve resumption only (gigabytes each for a 135M model with its
    optimiser state); the final model stays."""
    for d in sorted(run_dir.rglob("checkpoints")) if run_dir.exists() else []:
        checkpoint.remove_all(d)


def main(cfg: ExperimentConfig) -> dict:
    arms = selected_arms(validate_inputs(cfg), cfg)
    root = Path(cfg.output_dir)
    stage = Stages(root, 6 + (cfg.lr_calibration is not None) + sum(a.seeds for a in arms),
                   config=shared_settings(cfg))
    keys = arm_keys(arms)
    data = stage("data", lambda: build_data(cfg, root))
    files = DataFiles(data["source_pairs"], data["target_prompts"], data["eval_prompts"], data.get("heldout_pairs"))
    calibration = None
    if cfg.lr_calibration is not None:
        setup = Setup(cfg, root, files)
        calibration = stage("lr_calibration", lambda: calibrate_lr(setup, cfg.lr_calibration, root / "lr_calibration"))
        cfg = replace(cfg, dpo_train=replace(cfg.dpo_train, lr=calibration["lr"]))
        arms = rebase(arms, cfg)
    setup = Setup(cfg, root, files)
    reward_model = stage("reward", lambda: {"model": train_reward(setup, root / "reward")})["model"]
    samples = stage("policy_samples", lambda: {"samples": setup.target_samples(
        cfg.model.path, root / "policy_samples" / "samples.jsonl")})["samples"]
    reward_models = {"reward (shared)": {"kind": cfg.reward_model.kind, **stage(
        "reward_shift", lambda: shift_cost(setup, reward_model, samples))}}
    ctx = Context(cfg, root, files, reward_model=reward_model, samples=samples)
    for arm in arms:
        for k in range(arm.seeds):
            name = replicate_name(arm.name, k)

            def run_arm(arm=arm, k=k, name=name):
                result = ARMS.get(arm.kind).run(ctx.for_replicate(k), name, arm.options)
                result = replace(result, points=evaluate_points(ctx, name, result.points))
                drop_checkpoints(root / name)
                drop_checkpoints(root / "rewards" / name)
                return asdict(result)

            info = stage(f"arm_{name}", run_arm, key=keys[name],
                         clear=(root / name, root / "weights" / name, root / "rewards" / name))
            ctx.arms[name] = ArmResult.from_record(info)
            if "reward_model" in ctx.arms[name].diagnostics:
                reward_models[name] = ctx.arms[name].diagnostics["reward_model"]
    for d in sorted((root / "lr_calibration").rglob("snapshots")) if cfg.lr_calibration is not None else []:
        shutil.rmtree(d)  # kept until source-only DPO's first replicate had linked them (recipes.reuse)
    initial = next(a.name for a in arms if a.kind == "initial")

    def evaluate():
        ec = replace(cfg.evaluate, prompts=files.eval_prompts, output_dir=str(root / "evaluate"),
                     progress=cfg.progress, policies={n: r.model for n, r in ctx.arms.items() if r.model},
                     baseline=initial, compare_to=cfg.baseline_arm, reward_model=reward_model,
                     gold=dict(cfg.gold), wrap_text_as_chat=cfg.wrap_text_as_chat)
        evaluate_main(ec)
        return {"file": str(root / "evaluate" / "evaluation.json")}

    ev = stage("evaluate", evaluate, key=stage_key({n: keys[n] for n, r in ctx.arms.items() if r.model}))
    evaluation = json.loads(read_text(ev["file"]))
    cands = candidates(arms, ctx.arms, evaluation, root)
    selection = stage("selection", lambda: gather(cands, reward_model, files.source_pairs, cfg.wrap_text_as_chat, cfg.seed),
                      key=stage_key({"candidates": {c["replicate"]: keys[c["replicate"]] for c in cands},
                                     "settings": SELECTION_SETTINGS}))
    run = ExperimentRun(cfg=cfg, arms=arms, results=ctx.arms, evaluation=evaluation, stages=stage.records, data=data,
                        reward_models=reward_models, calibration=calibration, selection=selection)
    return write_outputs(root, run)
