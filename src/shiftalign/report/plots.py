"""Plots of an experiment as base64 PNG data URIs (matplotlib, Agg backend; every axis labelled).

- ``difference_plot``: each arm's gold-reward difference to the baseline with its 95 % interval (and the
  family-wise one of a method arm);
- ``gold_vs_kl``: gold reward against KL to the initial policy, with the KL's 95 % interval;
- ``training_curves``: training loss per optimiser step of every training run.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

from ..io import read_jsonl


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_png(fig) -> str:
    plt = pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def png_file(path: Path) -> str | None:
    """A PNG written by another stage (e.g. the weight histogram) as a data URI; None when absent."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode() if path.exists() else None


def save_png(uri: str, path: Path) -> None:
    path.write_bytes(base64.b64decode(uri.split(",", 1)[1]))


def difference_plot(rows: list[dict], baseline: str) -> str:
    """rows: dicts with arm, diff, ci95 and optionally ci95_family (in display order): the arm's own
    interval as the thick bar (coloured by its sign), the family-wise one as a thin grey bar behind it."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    for i, r in enumerate(rows):
        if r.get("ci95_family"):
            flo, fhi = r["ci95_family"]
            ax.errorbar(r["diff"], i, xerr=[[r["diff"] - flo], [fhi - r["diff"]]], fmt="none", capsize=2,
                        color="#999999", lw=0.8)
        lo, hi = r["ci95"]
        ax.errorbar(r["diff"], i, xerr=[[r["diff"] - lo], [hi - r["diff"]]], fmt="o", capsize=4, lw=2,
                    color="#228833" if lo > 0 else "#cc3311" if hi < 0 else "#4477aa")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(range(len(rows)), [r["arm"] for r in rows])
    ax.invert_yaxis()
    family = "; grey: family-wise over the method arms" if any(r.get("ci95_family") for r in rows) else ""
    ax.set_xlabel(f"gold reward minus {baseline}, held-out target prompts (95 % interval{family})")
    ax.set_ylabel("arm")
    return figure_png(fig)


DEFAULT_OFFSET = 4.0  # a label's height above its point, in points, when nothing is in its way


def label_positions(points: list[tuple[float, float]], widths: list[float], height: float = 220.0,
                    step: float = 9.0) -> list[tuple[str, float]]:
    """Where each label of ``points`` goes: its side of the point (``right`` or ``left``) and its vertical
    offset in points, so that labels neither print over each other nor run past the plot's right or left
    edge. In order of x, a label takes the first free place of: right, then left, at the default offset
    above the point, then below the point clear of its marker, then each ``step`` further above, then
    below, and so on (labels stay near their points instead of stacking up). A place is taken when an
    earlier label's text (``widths``: each label's width as a fraction of the data's x range) overlaps it
    across x and sits less than ``step`` above or below it (the y range drawn ``height`` points tall)."""
    if not points:
        return []
    xs, ys = zip(*points)
    x0, y0 = min(xs), min(ys)
    wx, wy = (max(xs) - x0) or 1.0, (max(ys) - y0) or 1.0
    placed: list[tuple[float, float, float]] = []  # left end, right end, height of each label placed
    result: list[tuple[str, float]] = [("right", DEFAULT_OFFSET)] * len(points)
    for i in sorted(range(len(points)), key=lambda i: points[i]):
        x, base, w = (points[i][0] - x0) / wx, (points[i][1] - y0) / wy * height, widths[i]
        sides = [(side, a, b) for side, a, b in (("right", x, x + w), ("left", x - w, x))
                 if -0.02 <= a and b <= 1.02] or [("right", x, x + w)]
        for k in range(2 * len(points) + 1):  # enough levels for every label to find one
            dy = DEFAULT_OFFSET + (k + 1) // 2 * step if k % 2 == 0 else -12.0 - k // 2 * step
            free = [(side, a, b) for side, a, b in sides
                    if not any(a < pb and pa < b and abs(base + dy - ph) < step for pa, pb, ph in placed)]
            if free:
                side, a, b = free[0]
                break
        placed.append((a, b, base + dy))
        result[i] = (side, dy)
    return result


def gold_vs_kl(rows: list[dict], initial: str, frontier: list[tuple[float, float]] | None = None) -> str:
    """rows: dicts with arm, gold, kl, kl_ci95; frontier: (KL, gold) points of the source-only frontier."""
    return figure_png(gold_vs_kl_figure(rows, initial, frontier))


FRONTIER_LABEL = "source-only frontier"


def gold_vs_kl_figure(rows: list[dict], initial: str, frontier: list[tuple[float, float]] | None = None):
    """The figure of ``gold_vs_kl``. Each arm has its own colour and marker (10 colours, then the next marker),
    its label the arm's colour; a label moved away from its point to stay clear of the others is joined to it
    by a thin line. An arm with a ``frontier`` (its earlier trajectory points) is drawn as a curve from the
    initial policy through them to its final point. ``frontier``, when given, is drawn as a thick grey band
    beneath the arms: the source-only frontier the methods are read against (experiment.frontier, eq. 1)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    if frontier:
        ax.plot(*zip(*frontier), color="0.6", lw=5, alpha=0.35, solid_capstyle="round", zorder=0,
                label=FRONTIER_LABEL)
        ax.legend(loc="lower right", fontsize=8, frameon=False)
    margin = 0.12  # room for labels moved up or down
    ax.margins(y=margin)
    box = ax.get_window_extent()  # the y range of the data is drawn this many points tall, less the margins
    height = box.height * 72.0 / fig.dpi / (1 + 2 * margin)
    places = label_positions([(r["kl"], r["gold"]) for r in rows], [0.015 * len(r["arm"]) for r in rows], height)
    colours, markers = plt.get_cmap("tab10").colors, "osD^v"
    start = next(((r["kl"], r["gold"]) for r in rows if r["arm"] == initial), None)
    for i, (r, (side, dy)) in enumerate(zip(rows, places)):
        colour, marker = colours[i % len(colours)], markers[i // len(colours) % len(markers)]
        if r.get("frontier"):
            curve = ([start] if start else []) + [(p["kl"], p["gold"]) for p in r["frontier"]]
            ax.plot(*zip(*curve), color=colour, lw=1, marker=marker, ms=3, alpha=0.7)
        lo, hi = r.get("kl_ci95") or (r["kl"], r["kl"])
        ax.errorbar(r["kl"], r["gold"], xerr=[[r["kl"] - lo], [hi - r["kl"]]], fmt=marker, capsize=3, color=colour)
        moved = dy != DEFAULT_OFFSET
        ax.annotate(r["arm"], (r["kl"], r["gold"]), fontsize=8, xytext=(4 if side == "right" else -4, dy),
                    textcoords="offset points", ha="left" if side == "right" else "right",
                    color=colour, arrowprops=dict(arrowstyle="-", color=colour, lw=0.6, shrinkA=1, shrinkB=3) if moved else None)
    ax.set_xlabel(f"KL to {initial} (nats per response, 95 % interval)")
    ax.set_ylabel("gold reward (mean)")
    return fig


def training_curves(runs: dict[str, Path]) -> str | None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    drawn = False
    for name, metrics in runs.items():
        if not metrics.exists():
            continue
        pts = [(r["step"], r["loss"]) for r in read_jsonl(metrics) if r.get("loss") is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o", ms=3, label=name)
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("training loss")
    ax.legend(fontsize=8)
    return figure_png(fig)
