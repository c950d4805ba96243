"""Plot helpers that can be checked without looking at the picture."""

from shiftalign.report.plots import label_offsets


def test_labels_of_points_close_together_are_moved_apart_and_others_are_not():
    points = [(45.1, 0.975), (46.4, 0.984), (41.0, 0.981), (0.0, 0.55), (10.7, 0.854)]
    dy = label_offsets(points, [0.2] * len(points))
    close = sorted(dy[:3])
    assert close[1] - close[0] >= 9 and close[2] - close[1] >= 9  # the three warm arms: one label each line
    assert dy[3] == dy[4] == 4.0  # far from everything: the default offset
    assert label_offsets([], []) == [] and label_offsets([(1.0, 1.0)], [0.1]) == [4.0]
    # a label long enough to reach the next point pushes that one's label up; a short one does not
    assert label_offsets([(0.0, 0.5), (3.0, 0.5), (10.0, 1.0)], [0.5, 0.1, 0.1])[1] == 13.0
    assert label_offsets([(0.0, 0.5), (3.0, 0.5), (10.0, 1.0)], [0.2, 0.1, 0.1])[1] == 4.0
