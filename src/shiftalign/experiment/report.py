"""An experiment's outputs: ``results.json`` (raw numbers per arm), ``results.md`` (the table
BENCHMARKS.md quotes), PNG plots and a self-contained ``report.html`` that opens with the verdict."""

from __future__ import annotations

from pathlib import Path

from ..io import write_json_atomic, write_text_atomic
from ..log import log
from ..report.html import write_report
from ..report.plots import difference_plot, gold_vs_kl, png_file, save_png, training_curves
from ..rundir import fingerprint
from .calibrate import describe
from .candidates import selection_results
from .frontier import envelope_line
from .results import Readings, arm_rows, seed_variance_record
from .run import ExperimentRun
from .tables import arms_tables, markdown_table, minutes, num, selection_markdown, selection_note, selection_tables
from .verdict import verdict


def _curves(root: Path, arms: dict) -> dict[str, Path]:
    runs = {"reward": root / "reward" / "metrics.jsonl"}
    for n in arms:
        runs[n] = root / n / "metrics.jsonl"
        for f in sorted((root / n).glob("round-*/train/metrics.jsonl")):
            runs[f"{n} ({f.parents[1].name})"] = f
    return {k: v for k, v in runs.items() if v.exists()}


RM_HEADERS = ["reward model", "kind", "in-domain accuracy", "on-policy accuracy", "shift cost"]


def reward_model_rows(reward_models: dict) -> list[list[str]]:
    """One row per reward model: accuracy against gold on held-out source pairs and on on-policy pairs."""
    return [[name, str(r.get("kind", "–")), num(r.get("in_domain_accuracy")), num(r.get("on_policy_accuracy")),
             num(r.get("shift_cost"), signed=True)] for name, r in reward_models.items()]


def write_outputs(root: Path, run: ExperimentRun) -> dict:
    cfg, initial, records, data, arms = run.cfg, run.initial, run.stages, run.data, run.results
    calibration, evaluation = run.calibration, run.evaluation
    seconds = {r["stage"]: r["seconds"] for r in records}
    readings = Readings(run)
    rows = arm_rows(run, readings)
    gold = run.gold_name
    lines = verdict(rows, {a.name: a.kind for a in run.arms}, cfg.baseline_arm, cfg.oracle_arm, gold,
                    {a.name: a.role for a in run.arms})
    total = sum(seconds.values())
    reward_models = run.reward_models
    selection = selection_results(run)
    result = {"arms": rows, "reward_models": reward_models, "selection": selection, "verdict": lines, "data": {k: v for k, v in data.items() if not isinstance(v, dict)},
              "evaluation": {k: v for k, v in evaluation.items() if k != "policies"}, "stage_seconds": records,
              "total_seconds": total, "seed_variance": seed_variance_record(readings),
              "config_fingerprint": fingerprint(cfg), **({"lr_calibration": calibration} if calibration else {})}
    write_json_atomic(root / "results.json", result)
    intervals = next((r["ci95_method"] for r in rows if r.get("ci95_method")), "prompts")
    setup = (f"Held-out target prompts: {evaluation['prompts']} × {evaluation['samples_per_prompt']} samples; gold: "
             f"{gold}; differences and 95 % intervals against `{cfg.baseline_arm}` over {intervals}, per arm and "
             f"family-wise over the method arms (max-|t|); "
             f"win rate and KL against `{initial}`; total {num(total / 60)} min.")
    if calibration:
        setup += " " + describe(calibration)
    rm_rows = reward_model_rows(reward_models)
    md = "\n".join(lines[:1] + [f"- {v}" for v in lines[1:]]) + "\n\n" + setup + "\n\n" + \
        markdown_table(rows, cfg.baseline_arm, initial)
    if rm_rows:
        md += "\n\n" + "\n".join("| " + " | ".join(r) + " |" for r in [RM_HEADERS, ["---"] * len(RM_HEADERS)] + rm_rows)
    md += "\n\n" + selection_markdown(selection)
    write_text_atomic(root / "results.md", md)

    ok = [r for r in rows if "failed" not in r]
    plots = {"difference.png": ("Gold reward: difference to the baseline with 95 % intervals",
                                difference_plot(ok, cfg.baseline_arm) if ok else None),
             "gold_vs_kl.png": ("Gold reward against KL to the initial policy",
                                gold_vs_kl(ok, initial, envelope_line(readings.baseline_curves)) if ok else None),
             "training_curves.png": ("Training curves", training_curves(_curves(root, arms)))}
    for fname, (_, uri) in plots.items():
        if uri:  # also as files, for BENCHMARKS.md
            save_png(uri, root / fname)
    images = list(plots.values()) + [(f"Density-ratio weights of `{n}`", png_file(root / "weights" / n / "weights.png"))
                                     for n in arms]
    stage_rows = [[r["stage"], minutes(r["seconds"])] for r in records]
    notes = [setup, f"Source pairs: {data.get('source_pairs_n')}"
             + (f" (label agreement with gold {num(data['source_label_agreement'])})"
                if data.get("source_label_agreement") is not None else "")
             + f"; target prompts: {data.get('target_prompts_n')}; held-out prompts: {data.get('eval_prompts_n')}.",
             "KL: of the sampling distributions at the evaluation temperature, exact per token, summed over the "
             "response (never negative); its interval resamples prompts.",
             "Reward models: in-domain accuracy on held-out source pairs, on-policy accuracy on every two samples of "
             "a target prompt from the initial policy with different gold scores; shift cost = in-domain − on-policy.",
             selection_note(selection),
             "– : does not apply to this arm."]
    report = write_report(root / "report.html", "shiftalign experiment", lines,
                          [*arms_tables(rows, cfg.baseline_arm, initial),
                           *([("Reward models: accuracy against gold", RM_HEADERS, rm_rows)] if rm_rows else []),
                           *selection_tables(selection, initial),
                           ("Stages", ["stage", "time (min)"], stage_rows)], images, notes)
    log(f"results: {root / 'results.md'}; report: {report}")
    log(md)
    return result
