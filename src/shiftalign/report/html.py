"""A self-contained ``report.html``: tables of each stage's numbers and matplotlib plots embedded
as base64 PNGs (the page loads no external resource), written atomically.

Plots: the weight histogram with ESS, training curves (loss per step of every training stage),
gold reward per policy with its 95 % interval, and gold reward against KL to the initial policy.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from ..io import write_text_atomic


def figure_png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def png_file(path: Path) -> str | None:
    """A PNG written by another stage (e.g. the weight histogram) as a data URI; None when absent."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode() if path.exists() else None


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def training_curves(runs: dict[str, Path]) -> str | None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    any_line = False
    for name, metrics in runs.items():
        if not metrics.exists():
            continue
        recs = [json.loads(l) for l in metrics.read_text().splitlines() if l.strip()]
        pts = [(r["step"], r["loss"]) for r in recs if "loss" in r and r.get("loss") is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o", ms=3, label=name)
            any_line = True
    if not any_line:
        plt.close(fig)
        return None
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("training loss")
    ax.legend()
    return figure_png(fig)


def gold_bars(evaluation: dict, compare: str) -> str:
    plt = pyplot()
    names = list(evaluation["policies"])
    means = [evaluation["policies"][n]["gold_mean"] for n in names]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(names, means, color="#4477aa")
    base = evaluation["policies"][compare]["gold_mean"]
    for i, n in enumerate(names):
        lo, hi = evaluation["policies"][n][f"gold_diff_vs_{compare}_ci95"]
        ax.errorbar(i, base + (lo + hi) / 2, yerr=[[(hi - lo) / 2], [(hi - lo) / 2]], color="k", capsize=4)
    ax.set_ylabel("gold reward (mean)")
    ax.set_title(f"error bars: 95 % CI of the difference to {compare}", fontsize=10)
    ax.tick_params(axis="x", rotation=20)
    return figure_png(fig)


def reward_vs_kl(evaluation: dict) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for n, e in evaluation["policies"].items():
        ax.scatter(e["kl_to_baseline"], e["gold_mean"])
        ax.annotate(n, (e["kl_to_baseline"], e["gold_mean"]), fontsize=8, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("KL to the initial policy (nats, sequence)")
    ax.set_ylabel("gold reward")
    return figure_png(fig)


def _table(rows: list[dict]) -> str:
    if not rows:
        return ""
    keys = list(rows[0])
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)

    def cell(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(cell(x) for x in v) + "]"
        return html.escape(str(v))

    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(k))}</td>" for k in keys) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(path: Path, title: str, stages: list[dict], images: list[tuple[str, str | None]],
                 tables: list[tuple[str, list[dict]]], notes: list[str]) -> Path:
    parts = [f"<h1>{html.escape(title)}</h1>"]
    parts.append("<h2>Stages</h2>" + _table(stages))
    for heading, rows in tables:
        parts.append(f"<h2>{html.escape(heading)}</h2>" + _table(rows))
    for heading, src in images:
        if src:
            parts.append(f"<h2>{html.escape(heading)}</h2><img alt='{html.escape(heading)}' src='{src}'>")
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    style = ("body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
             "font-size:13px;text-align:right}th{background:#f3f3f3}img{max-width:100%}")
    doc = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
    write_text_atomic(path, doc)
    return path
