"""Source pairs of a controlled shift: disjoint Bradley-Terry pairs and best-vs-worst Plackett-Luce pairs."""

import math
import random

import pytest

from shiftalign.rollout.behaviour import label_agreement, label_pairs


def gold(prompts, responses):
    return [float(len(r)) for r in responses]  # a longer response is better


RESPONSES = [["a" * k for k in (3, 9, 1, 6)]] * 400


def test_best_vs_worst_keeps_the_extremes_without_noise():
    rows = label_pairs(["p"] * 400, RESPONSES, gold, 1e-6, random.Random(0), pairing="best_vs_worst")
    assert len(rows) == 400
    assert all(r["chosen"] == "a" * 9 and r["rejected"] == "a" for r in rows)
    assert label_agreement(rows) == 1.0


def test_best_vs_worst_noise_follows_plackett_luce():
    tau = 3.0
    rows = label_pairs(["p"] * 400, RESPONSES, gold, tau, random.Random(1), pairing="best_vs_worst")
    top = sum(r["chosen"] == "a" * 9 for r in rows) / len(rows)
    w = [math.exp(k / tau) for k in (3, 9, 1, 6)]
    assert top == pytest.approx(w[1] / sum(w), abs=0.07)  # P(first place) of a Plackett-Luce model
    assert 0.5 < label_agreement(rows) < 1.0
    for r in rows:  # p_label is the Bradley-Terry probability of the recorded order
        d = r["gold_chosen"] - r["gold_rejected"]
        assert r["p_label"] == pytest.approx(1 / (1 + math.exp(-d / tau)))


def test_disjoint_pairs_two_per_prompt_and_bad_pairing():
    rows = label_pairs(["p"] * 10, RESPONSES[:10], gold, 0.1, random.Random(0))
    assert len(rows) == 20 and {(len(r["chosen"]), len(r["rejected"])) for r in rows} == {(9, 3), (6, 1)}
    with pytest.raises(ValueError, match="pairing"):
        label_pairs(["p"], RESPONSES[:1], gold, 0.1, random.Random(0), pairing="all")


def test_a_biased_rater_prefers_the_cue_and_its_labels_leave_the_gold():
    """A rating bias the gold does not share: the cued response wins whenever the bias outweighs the gold
    gap; p_label stays the gold's probability, so agreement with gold falls; a zero bias changes nothing."""
    responses = [["a" * 3, "b", "a" * 9, "a" * 6]] * 200  # the cue ("b") is on the lowest-gold response
    cue = lambda r: 100.0 * ("b" in r)  # noqa: E731
    plain = label_pairs(["p"] * 200, responses, gold, 1.0, random.Random(2), pairing="best_vs_worst")
    biased = label_pairs(["p"] * 200, responses, gold, 1.0, random.Random(2), pairing="best_vs_worst",
                         rating_bias=cue)
    assert all(r["chosen"] == "b" for r in biased)
    assert label_agreement(biased) == 0.0 and label_agreement(plain) > 0.8
    assert all(r["p_label"] == pytest.approx(1 / (1 + math.exp(-(r["gold_chosen"] - r["gold_rejected"]))))
               for r in biased)
    zero = label_pairs(["p"] * 200, responses, gold, 1.0, random.Random(2), pairing="best_vs_worst",
                       rating_bias=lambda r: 0.0)
    assert zero == plain
    disjoint = label_pairs(["p"] * 50, [["b", "a" * 9]] * 50, gold, 0.1, random.Random(0), rating_bias=cue)
    assert all(r["chosen"] == "b" for r in disjoint)
