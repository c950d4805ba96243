"""Results of the shift benchmark: one row per arm, the gap-recovery ratio, ``results.json``,
``results.md`` (the table BENCHMARKS.md quotes) and a self-contained ``report.html``.

Gap-recovery ratio of an arm: (gold(arm) - gold(source-only)) / (gold(oracle) - gold(source-only)),
on the held-out target prompts. It is reported only when the oracle's interval against source-only
lies above zero: when it contains zero the denominator is noise, and when it lies below zero (the
oracle significantly worse than source-only) the ratio's sign is inverted and it says nothing either.
"""

from __future__ import annotations

import base64
from pathlib import Path

from shiftalign.io import write_json_atomic, write_text_atomic
from shiftalign.report.html import gold_bars, png_file, reward_vs_kl, training_curves, write_report

COLUMNS = ["arm", "gold", "diff", "ci95", "gap_recovery", "win_rate", "kl", "rm_accuracy", "ess_fraction",
           "domain_auc", "label_accuracy", "pseudo_pairs", "seconds"]


def arm_rows(cfg, records: list[dict], arms: dict, evaluation: dict) -> list[dict]:
    base, oracle = cfg.baseline_arm, cfg.oracle_arm
    pol = evaluation["policies"]
    key = f"gold_diff_vs_{base}"
    gap = pol[oracle][key] if oracle in pol else 0.0  # an oracle without a policy leaves no ratio
    oracle_lo = pol[oracle][f"{key}_ci95"][0] if oracle in pol else 0.0
    usable = oracle_lo > 0
    seconds = {r["stage"]: r["seconds"] for r in records}
    rows = []
    for name, info in arms.items():
        if name not in pol:
            rows.append({"arm": name, "failed": info.get("failed"), "seconds": seconds.get(f"arm_{name}")})
            continue
        e = pol[name]
        auc = (info.get("domain_auc_before"), info.get("domain_auc_after"))
        rows.append({"arm": name, "gold": e["gold_mean"], "diff": e[key], "ci95": e[f"{key}_ci95"],
                     "gap_recovery": 0.0 if name == base else (e[key] / gap if usable else None),
                     "win_rate": e["win_rate_vs_baseline"], "kl": e["kl_to_baseline"],
                     "rm_accuracy": e.get("reward_model_accuracy"), "ess_fraction": info.get("ess_fraction"),
                     "domain_auc": list(auc) if auc[0] is not None else None,
                     "label_accuracy": info.get("label_accuracy"), "pseudo_pairs": info.get("pseudo_pairs"),
                     "seconds": seconds.get(f"arm_{name}")})
    return rows


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:+.3f}" if abs(v) < 10 else f"{v:.0f}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def markdown_table(rows: list[dict]) -> str:
    failed = [f"- `{r['arm']}` has no policy: {r['failed']}\n" for r in rows if "failed" in r]
    rows = [r for r in rows if "failed" not in r]
    head = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    table = head + "".join("| " + " | ".join(_fmt(r.get(c)) for c in COLUMNS) + " |\n" for r in rows)
    return table + ("\n" + "".join(failed) if failed else "")


def difference_plot(rows: list[dict], baseline: str) -> str:
    """Each arm's gold-reward difference to the baseline arm with its paired-bootstrap 95 % interval,
    in the configured arm order."""
    from shiftalign.report.html import figure_png, pyplot

    plt = pyplot()
    rows = [r for r in rows if "failed" not in r]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1))
    for i, r in enumerate(rows):
        lo, hi = r["ci95"]
        ax.errorbar(r["diff"], i, xerr=[[r["diff"] - lo], [hi - r["diff"]]], fmt="o", capsize=4,
                    color="#228833" if lo > 0 else "#cc3311" if hi < 0 else "#4477aa")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(range(len(rows)), [r["arm"] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel(f"gold reward minus {baseline} (held-out target prompts)")
    return figure_png(fig)


def write_summary(root: Path, cfg, records: list[dict], data: dict, arms: dict, evaluation: dict, log=print) -> dict:
    rows = arm_rows(cfg, records, arms, evaluation)
    total = sum(r["seconds"] for r in records)
    oracle = next(r for r in rows if r["arm"] == cfg.oracle_arm)
    verdict = ("the oracle beats source-only DPO (95 % interval above zero)" if oracle.get("gap_recovery") is not None
               else "the oracle's interval against source-only DPO does not lie above zero: gap-recovery ratios are "
                    "not reported")
    result = {"arms": rows, "data": {k: v for k, v in data.items() if not isinstance(v, dict)},
              "evaluation": {k: v for k, v in evaluation.items() if k != "policies"}, "stage_seconds": records,
              "total_seconds": total, "oracle_verdict": verdict}
    write_json_atomic(root / "results.json", result)
    md = (f"Held-out target prompts: {evaluation['prompts']} x {evaluation['samples_per_prompt']} samples; gold: "
          f"{evaluation['gold']}; differences and paired-bootstrap 95 % intervals against `{cfg.baseline_arm}`; "
          f"total {total / 60:.1f} min. Verdict: {verdict}.\n\n" + markdown_table(rows))
    write_text_atomic(root / "results.md", md)
    ordered = {**evaluation, "policies": {n: evaluation["policies"][n] for n in arms if n in evaluation["policies"]}}
    curves = {}
    for n in arms:
        files = [root / n / "metrics.jsonl"] + sorted((root / n).glob("round-*/train/metrics.jsonl"))
        for f in files:
            if f.exists():
                curves[n + ("" if f.parent == root / n else f" ({f.parents[1].name})")] = f
    images = [("Gold reward: difference to source-only DPO with 95 % intervals", difference_plot(rows, cfg.baseline_arm)),
              ("Gold reward per arm", gold_bars(ordered, cfg.baseline_arm)),
              ("Gold reward against KL to the initial policy", reward_vs_kl(ordered)),
              ("Training curves", training_curves(curves))]
    for fname, (_, uri) in zip(("difference.png", "gold_per_arm.png", "gold_vs_kl.png", "training_curves.png"), images):
        if uri:  # also as files, for BENCHMARKS.md
            (root / fname).write_bytes(base64.b64decode(uri.split(",", 1)[1]))
    images += [(f"Density-ratio weights: {name}", png_file(root / "weights" / name / "weights.png")) for name in arms]
    notes = [verdict, f"Source pairs: {data.get('source_pairs_n')} (label agreement with gold "
                      f"{_fmt(data.get('source_label_agreement'))}); target prompts {data.get('target_prompts_n')}; "
                      f"held-out prompts {data.get('eval_prompts_n')}."]
    report = write_report(root / "report.html", "shiftalign domain-shift benchmark", records,
                          [(h, s) for h, s in images if s], [("Arms", rows)], notes)
    log(f"[shiftalign] results: {root / 'results.md'}; report: {report}")
    log(md)
    return result
