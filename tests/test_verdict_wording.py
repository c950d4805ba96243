"""The verdict's words follow the intervals: an oracle significantly below the baseline means there is no gap
to recover (not "buys nothing measurable"), and "at least half of the gap" is said only when the gap
recovery's interval lies at or above 0.5."""

from shiftalign.experiment.verdict import verdict

ROLES = {"src": "control", "oracle": "oracle", "m": "method"}
KINDS = {"src": "dpo", "oracle": "pseudo", "m": "pseudo"}


def _row(arm, diff, ci, **kw):
    return {"arm": arm, "gold": 0.5 + diff, "diff": diff, "ci95": ci, "gap_recovery": None, "kl": 1.0,
            "kl_ci95": [0.8, 1.2], **kw}


def _lead(oracle_ci, recovery=None, recovery_ci=None):
    rows = [_row("src", 0.0, [0.0, 0.0]), _row("oracle", sum(oracle_ci) / 2, oracle_ci),
            _row("m", 0.1, [0.05, 0.15], gap_recovery=recovery, gap_recovery_ci95=recovery_ci)]
    return verdict(rows, KINDS, "src", "oracle", "vader", ROLES)[0]


def test_an_oracle_below_the_baseline_leaves_no_gap_to_recover():
    lead = _lead([-0.3, -0.1])
    assert "worse: the interval lies below zero" in lead and "no gap for any method to recover" in lead
    assert "buy nothing measurable" not in lead and "recovers" not in lead
    lead = _lead([-0.1, 0.2])
    assert "not resolved: at this budget gold labels of the target buy nothing measurable" in lead
    assert "no gap for any method" not in lead


def test_at_least_half_only_when_the_interval_says_so():
    lead = _lead([0.1, 0.2], 0.67, [0.52, 0.81])
    assert "`m` recovers 0.67 [0.52, 0.81] of the gap (at least half of it: the interval's lower end is at or above " \
           "0.5)." in lead
    lead = _lead([0.1, 0.2], 0.67, [0.31, 1.04])
    assert "`m` recovers 0.67 [0.31, 1.04] of the gap (that it recovers at least half is not supported: the interval " \
           "reaches below 0.5)." in lead
    assert "at least half of it" not in lead


def _at(kl, diff, ci, asked="own", capped=False, note=""):
    return {"asked": asked, "kl": kl, "diff": diff, "ci95": ci, "capped": capped, "note": note}


def test_matched_kl_is_read_and_an_oracle_that_does_not_beat_the_source_frontier_leaves_no_gap():
    rows = [_row("src", 0.0, [0.0, 0.0]),
            _row("oracle", 0.15, [0.1, 0.2], matched_kl=[_at(2.0, 0.01, [-0.03, 0.05])]),
            _row("m", 0.1, [0.05, 0.15], gap_recovery=0.67, gap_recovery_ci95=[0.52, 0.81],
                 matched_kl=[_at(1.0, 0.02, [0.01, 0.03], asked=1.0), _at(4.0, -0.02, [-0.05, 0.01])])]
    lead = verdict(rows, KINDS, "src", "oracle", "vader", ROLES)[0]
    assert ("at matched KL, `m` is at 1 nats +0.02 [+0.01, +0.03] (resolved); at its own KL (4 nats) −0.02 "
            "[−0.05, +0.01] (not resolved)") in lead
    assert "this regime has no gap any method could recover" in lead and "recovers" not in lead
    rows[1]["matched_kl"] = [_at(2.0, 0.06, [0.02, 0.1])]
    lead = verdict(rows, KINDS, "src", "oracle", "vader", ROLES)[0]
    assert "no gap any method" not in lead and "`m` recovers 0.67 [0.52, 0.81] of the gap" in lead


def test_no_gap_is_not_read_where_the_source_frontier_stops_short_of_the_oracles_kl():
    """Compared at the largest KL the source-only frontier reaches (capped), an oracle's interval says nothing
    about its own KL: the verdict says the gap is not measured there, never that the regime has none."""
    rows = [_row("src", 0.0, [0.0, 0.0]),
            _row("oracle", 0.15, [0.1, 0.2], matched_kl=[_at(5.0, -0.05, [-0.09, 0.02], capped=True,
                                                             note="compared at 5 nats")]),
            _row("m", 0.1, [0.05, 0.15], gap_recovery=0.67, gap_recovery_ci95=[0.52, 0.81])]
    lead = verdict(rows, KINDS, "src", "oracle", "vader", ROLES)[0]
    assert "does not reach the oracle's own KL, so whether gold labels beat more source training there is not " \
           "measured" in lead
    assert "no gap any method" not in lead and "`m` recovers 0.67 [0.52, 0.81] of the gap" in lead
