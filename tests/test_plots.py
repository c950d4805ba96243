"""Plot helpers that can be checked without looking at the picture."""

from shiftalign.report.plots import label_positions


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
