"""The AUROC of an ensemble's spread for a wrong pseudo-label (metrics.spread_auroc) on cases with known answers,
its bootstrap interval against scikit-learn replicate by replicate and its coverage in simulation, and the
reading of a round's pairs against gold (labeling.gold_check)."""

import json
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from shiftalign.labeling.gold_check import pair_label_accuracy, round_label_check
from shiftalign.metrics import spread_auroc

from conftest import write_jsonl


def test_known_answers():
    wrong = [True, True, False, False, False]
    assert spread_auroc([5.0, 4.0, 1.0, 2.0, 0.5], wrong)["auroc"] == 1.0  # every wrong label has the larger spread
    assert spread_auroc([0.1, 0.2, 1.0, 2.0, 0.5], wrong)["auroc"] == 0.0  # reversed
    assert spread_auroc([1.0] * 5, wrong)["auroc"] == 0.5  # all tied: the spread says nothing
    # wrong {2, 1} against right {1, 0}: 2>1, 2>0, 1=1 (a half), 1>0 -> 3.5 / 4
    tied = spread_auroc([2.0, 1.0, 1.0, 0.0], [True, True, False, False])
    assert tied["auroc"] == pytest.approx(0.875) and (tied["pairs"], tied["wrong"]) == (4, 2)
    assert spread_auroc([1.0, 2.0, 3.0], [False] * 3) is None and spread_auroc([1.0, 2.0], [True, True]) is None
    assert spread_auroc([], []) is None


def test_the_interval_holds_the_estimate_is_seeded_and_equals_sklearn_per_resample():
    rng = np.random.default_rng(3)
    wrong = rng.random(80) < 0.3
    spread = np.round(rng.normal(wrong * 0.8, 1.0), 1)  # rounded: ties within and across the classes
    got = spread_auroc(spread, wrong, bootstrap=300, seed=7)
    lo, hi = got["ci95"]
    assert got["auroc"] == pytest.approx(roc_auc_score(wrong, spread)) and 0 <= lo < got["auroc"] < hi <= 1
    assert spread_auroc(spread, wrong, bootstrap=300, seed=7) == got
    assert spread_auroc(spread, wrong, bootstrap=300, seed=8)["ci95"] != got["ci95"]
    idx = np.random.default_rng(7).integers(0, 80, (300, 80))  # the same resamples, each scored by scikit-learn
    by_sklearn = [roc_auc_score(wrong[i], spread[i]) for i in idx if 0 < wrong[i].sum() < 80]
    assert got["ci95"] == pytest.approx(list(np.percentile(by_sklearn, [2.5, 97.5])), abs=1e-12)


def test_the_interval_covers_the_true_auroc_at_about_its_nominal_level():
    """Spreads N(1, 1) for wrong labels and N(0, 1) for right ones: the true AUROC is Phi(1 / sqrt 2)."""
    true = 0.5 * (1 + math.erf(0.5))
    rng = np.random.default_rng(0)
    hits = 0
    for k in range(200):
        wrong = rng.random(100) < 0.3
        lo, hi = spread_auroc(rng.normal(wrong.astype(float), 1.0), wrong, bootstrap=400, seed=k)["ci95"]
        hits += lo <= true <= hi
    assert 0.89 <= hits / 200 <= 0.99


def _pair(cid, rid, chosen, rejected, model_scores, spread):
    return {"id": f"{cid}>{rid}", "prompt": "p", "chosen": chosen, "rejected": rejected,
            "provenance": {"model_scores": model_scores, "spread": spread}}


def test_a_rounds_pairs_are_read_against_gold_once_for_accuracy_and_spread(tmp_path):
    (tmp_path / "gold.py").write_text("def g(prompts, responses):\n    return [len(r) for r in responses]\n")
    gold = {"name": "python", "function": f"{tmp_path / 'gold.py'}:g"}
    rows = [_pair("a", "b", "long answer", "short", [[2.0, 1.5], [0.0, 0.5]], 0.25),  # right, sure
            _pair("c", "d", "ab", "abcd", [[1.0, 0.0], [0.5, 0.2]], 0.4),  # wrong, unsure
            _pair("e", "f", "xyz", "uvw", [[1.0, 2.0], [0.0, 0.0]], 0.5),  # a gold tie: left out
            # reoriented by another scorer (flipped): the ensemble preferred "yy", which gold puts lower
            _pair("g", "h", "yyyy", "yy", [[0.0, 0.1], [1.0, 2.0]], 0.45),
            _pair("i", "j", "one model, right", "no", [[1.0], [0.0]], 0.0)]  # no spread to read
    write_jsonl(tmp_path / "pairs.jsonl", rows)
    accuracy, checked = pair_label_accuracy(tmp_path / "pairs.jsonl", gold)
    assert accuracy == pytest.approx(3 / 4)  # the labels: right, wrong, right, right
    assert checked == [(False, 0.25), (True, 0.4), (True, 0.45)]  # the ensemble's order against gold
    got = round_label_check(tmp_path / "pairs.jsonl", gold, seed=0)
    assert got["label_accuracy"] == accuracy and got["spread_auroc"] == 1.0
    assert (got["spread_auroc_pairs"], got["spread_auroc_wrong"]) == (3, 2)
    assert got["spread_auroc_ci95"][0] <= 1.0 == got["spread_auroc_ci95"][1]
    none = round_label_check(tmp_path / "missing.jsonl", gold)
    assert none == {"label_accuracy": None, "spread_auroc": None, "spread_auroc_ci95": None,
                    "spread_auroc_pairs": None, "spread_auroc_wrong": None}
    write_jsonl(tmp_path / "one.jsonl", [rows[0], rows[4]])  # only right labels: no AUROC, an accuracy of 1
    assert json.dumps(round_label_check(tmp_path / "one.jsonl", gold)) == json.dumps(
        {**none, "label_accuracy": 1.0})
