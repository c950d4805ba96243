"""Plot helpers that can be checked without looking at the picture."""

import numpy as np

from shiftalign.report.plots import DEFAULT_OFFSET, gold_vs_kl_figure, label_positions


def boxes(points, widths, places, height=220.0):
    """Each label's text as (left end, right end, height), in the units label_positions uses."""
    xs, ys = zip(*points)
    wx, wy = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
    out = []
    for (x, y), w, (side, dy) in zip(points, widths, places):
        x = (x - min(xs)) / wx
        out.append((x, x + w, (y - min(ys)) / wy * height + dy) if side == "right" else (x - w, x, (y - min(ys)) / wy * height + dy))
    return out


def overlapping(bx, step=9.0):
    return [(i, j) for i, a in enumerate(bx) for j, b in enumerate(bx)
            if i < j and a[0] < b[1] and b[0] < a[1] and abs(a[2] - b[2]) < step]


def test_labels_of_points_close_together_do_not_overlap_and_others_stay_put():
    points = [(45.1, 0.975), (46.4, 0.984), (41.0, 0.981), (0.0, 0.55), (10.7, 0.854)]
    widths = [0.2] * len(points)
    places = label_positions(points, widths)
    assert not overlapping(boxes(points, widths, places))
    assert places[3] == places[4] == ("right", 4.0)  # far from everything: right of the point, default offset
    assert label_positions([], []) == [] and label_positions([(1.0, 1.0)], [0.1]) == [("right", 4.0)]


def test_a_label_that_would_run_past_the_right_edge_goes_left_of_its_point():
    # the quick start's plot: two arms at the right edge, about the same gold
    points = [(0.0, 0.579), (5.03, 0.681), (18.3, 0.862), (15.8, 0.863), (7.51, 0.774)]
    widths = [0.015 * len(n) for n in ("initial", "dpo_source", "rm_warm", "oracle_warm", "dpo_source_long")]
    places = label_positions(points, widths)
    bx = boxes(points, widths, places)
    assert places[2][0] == "left" and places[3][0] == "left"
    assert all(-0.02 <= a and b <= 1.02 for a, b, _ in bx) and not overlapping(bx)
    assert places[2][1] == 4.0  # room beside its neighbour: not pushed up out of the axes


def test_a_long_label_reaching_the_next_point_moves_that_label_and_a_short_one_does_not():
    points = [(0.0, 0.5), (3.0, 0.5), (10.0, 1.0)]
    long_first = label_positions(points, [0.5, 0.1, 0.1])
    assert long_first[1] != ("right", 4.0) and not overlapping(boxes(points, [0.5, 0.1, 0.1], long_first))
    assert label_positions(points, [0.2, 0.1, 0.1])[1] == ("right", 4.0)


def test_every_arm_of_a_crowded_plot_is_told_apart_and_a_moved_label_is_joined_to_its_point():
    # the shape of the default profile's plot: 18 arms, most of them in one cluster
    rows = [{"arm": f"arm_{i}", "kl": 1.0 + 0.05 * i, "gold": 0.69 + 0.002 * i, "kl_ci95": None} for i in range(16)]
    rows += [{"arm": "far_a", "kl": 22.8, "gold": 0.82}, {"arm": "far_b", "kl": 0.0, "gold": 0.60}]
    fig = gold_vs_kl_figure(rows, "initial")
    ax = fig.axes[0]
    points = [line for line in ax.lines if line.get_marker() in tuple("osD^v")]  # not the interval's caps
    assert len(points) == len(rows) and len({(str(p.get_color()), p.get_marker()) for p in points}) == len(rows)
    labels = {t.get_text(): t for t in ax.texts}
    assert set(labels) == {r["arm"] for r in rows}
    moved = [t for t in labels.values() if t.xyann[1] != DEFAULT_OFFSET]
    assert moved  # the cluster cannot hold 16 labels at the default offset
    assert all(t.arrow_patch is not None for t in moved)
    assert labels["far_a"].arrow_patch is None and labels["far_b"].arrow_patch is None
    assert all(t.get_color() == p.get_color() for t, p in zip(ax.texts, points))


def test_the_source_only_frontier_is_drawn_beneath_the_arms_with_its_label():
    from shiftalign.experiment.frontier import Curve, Point, envelope_line
    from shiftalign.report.plots import FRONTIER_LABEL

    def curve(arm, ks, gs):
        pts = [Point("0", 0.0, np.zeros((1, 4)), np.zeros((1, 4)))]
        return Curve(arm, (*pts, *(Point(str(k), 1.0, np.full((1, 4), g), np.full((1, 4), k)) for k, g in zip(ks, gs))))

    line = envelope_line([curve("short", [1.0], [0.5]), curve("far", [4.0], [0.8])], n=5)
    assert np.allclose(line, [(0.0, 0.0), (1.0, 0.5), (2.0, 0.6), (3.0, 0.7), (4.0, 0.8)])
    rows = [{"arm": "initial", "kl": 0.0, "gold": 0.0}, {"arm": "m", "kl": 2.0, "gold": 0.7}]
    ax = gold_vs_kl_figure(rows, "initial", line).axes[0]
    band = [x for x in ax.lines if x.get_label() == FRONTIER_LABEL]
    assert len(band) == 1 and list(band[0].get_xdata()) == [k for k, _ in line] and band[0].get_zorder() == 0
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [FRONTIER_LABEL]
    assert gold_vs_kl_figure(rows, "initial").axes[0].get_legend() is None
