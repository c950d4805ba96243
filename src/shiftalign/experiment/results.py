"""An experiment's numbers: one row per arm, with its intervals, gap recovery and matched-KL readings (the words
written from them: ``experiment.tables`` and ``experiment.verdict``).

Differences to the baseline and their 95 % intervals are over prompts *and* training seeds
(``experiment.statistics``, eq. 1): the variance of the per-prompt paired differences plus the
training-seed variance of each arm's mean, sigma^2 / S, with sigma^2 pooled over every trained arm of two or
more replicates (eq. 2), so an arm of one seed carries seed variance too; the interval is a generalised
(pivotal) one, each mean square drawn from its own law (eq. 3). With no multi-seed arm the seed variance is unknown and every row's ``ci95_method``
says the interval is over prompts only. An evaluation without per-prompt numbers gives its own paired
prompt interval (``ci95_method`` says so).

Gap-recovery ratio of an arm: (gold(arm) - gold(baseline)) / (gold(oracle) - gold(baseline)) on the
held-out target prompts, with its own 95 % interval (``gap_recovery_ci95``: joint draws of the two
differences, ``experiment.statistics.gap_recovery``). It is reported only when the oracle's gain is
resolved: fewer than 2.5 % of the draws give the oracle a non-positive gain (when its interval contains
zero the denominator is noise, and when it lies below zero the ratio's sign is inverted and it says nothing
either). An arm may name its own oracle (``Arm.oracle``: its recipe with gold labels, e.g. warm-started and
iterated like it), so that its ratio divides by what perfect labels buy with the same training rather than
with the single-round oracle's.

An arm trained with several seeds is one row: its numbers are means over its replicates and ``seed_sd`` is
the spread of the replicates' mean gold reward. ``gain_per_nat`` = Δ gold / (KL(arm) − KL(baseline)) to the
initial policy, given when the arm moves further from the initial policy than the baseline: gold bought per
extra nat, for comparing arms at unequal KL (the gold-against-KL plot shows the same frontier).

Arms have roles (``experiment.arms.arm_role``): ``reference`` (the initial policy), ``control`` (e.g.
random labels of the same on-policy pairs: what training alone moves, drift without information) and
``method``. The verdict picks the best method arm, so beside each method arm's own interval it gives the
family-wise one (``ci95_family``: all method arms at once, max-|t| over prompts and seeds,
``experiment.statistics.simultaneous_differences``), which a claim about the best of many arms needs, and its
difference to each control (``vs_control``).

An arm that trains longer than the baseline (warm-started from it, then further rounds) may name a matched
baseline (``Arm.matched_baseline``): an arm trained as long without information about the target, such as
source-only DPO for the same number of steps. Its row then also carries ``matched``: the difference to that
arm with its interval, and the gap recovery at equal training, (gold(arm) - gold(m)) / (gold(oracle) - gold(m))
with the arm's own oracle and its interval, reported under the same rule.
"""

from __future__ import annotations

import numpy as np

from .arms import source_only, start_arm
from .frontier import Curve, Point, default_levels, matched_kl
from .run import ExperimentRun
from .seeds import seed_spread, two_level_bootstrap
from .statistics import differences, gap_recovery, pooled_seed_variance, simultaneous_differences

BOOTSTRAP = 2000


def _per_prompt(entries: list[dict], key: str, fallback: str) -> np.ndarray:
    """(replicates, prompts) array of a per-prompt metric; a one-column array of the summary value when
    the evaluation has no per-prompt numbers."""
    if all(key in e for e in entries):
        return np.array([e[key] for e in entries], np.float64)
    return np.array([[e[fallback]] for e in entries], np.float64)


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _rounds_mean(diagnostics: list[dict], key: str = "label_accuracy") -> list[float | None]:
    """``key`` of each round of an iterated arm, averaged over its seed replicates ([] without rounds)."""
    per_seed = [[r.get(key) for r in d.get("rounds") or []] for d in diagnostics]
    return [_mean(seed[i] for seed in per_seed if i < len(seed)) for i in range(max(map(len, per_seed), default=0))]


def _rounds_interval(diagnostics: list[dict], key: str) -> list[list | None]:
    """``key`` (an interval) of each round of an iterated arm with one seed replicate; None where several
    replicates have the round (an interval of one replicate's pairs does not average; each stays in its stage)."""
    per_seed = [[r.get(key) for r in d.get("rounds") or []] for d in diagnostics]
    return [(have[0] if len(have := [seed[i] for seed in per_seed if i < len(seed)]) == 1 else None)
            for i in range(max(map(len, per_seed), default=0))]


class Readings:
    """What every row reads from a run: each arm's evaluated replicates, its per-prompt gold, differences
    against the baseline or another arm (over prompts and seeds, ``experiment.statistics``), the gap
    recoveries and the family-wise intervals of the method arms."""

    def __init__(self, run: ExperimentRun):
        self.run, self.baseline = run, run.baseline
        self.pol = run.evaluation["policies"]
        self.by_name = {a.name: a for a in run.arms}
        self.evaluated = {a.name: run.evaluated(a) for a in run.arms}
        live = [a for a in run.arms if self.evaluated[a.name]]
        self.per_seed = all("gold_per_prompt" in self.pol[n] for names in self.evaluated.values() for n in names) \
            and any(len(self.pol[n]["gold_per_prompt"]) > 1 for a in live for n in self.evaluated[a.name])
        self.base = self.entries(self.baseline) if self.baseline in self.evaluated else []
        self.family = [a.name for a in live if a.role == "method" and a.name not in (self.baseline, run.cfg.oracle_arm)]
        self.controls = [a.name for a in live if a.role == "control" and a.name != self.baseline]
        self.untrained = {a.name for a in run.arms if a.role == "reference"}
        self.golds = {a.name: self.gold(a.name) for a in live} if self.per_seed else {}
        self.seed_var = pooled_seed_variance(self.golds, self.untrained) if self.golds else None
        self.diffs = (differences(self.golds, self.baseline, self.seed_var, untrained=self.untrained)
                      if self.golds and self.base else {})
        self.family_ci = (simultaneous_differences(self.golds, self.baseline, self.family, self.seed_var,
                                                   untrained=self.untrained)
                          if self.diffs and len(self.family) > 1 else {})
        self.base_kl = _mean(e["kl_to_baseline"] for e in self.base) if self.base else None
        self.baseline_curves = [c for c in (curve_of(a, self) for a in live if source_only(a.options)) if c]

    def entries(self, arm: str) -> list[dict]:
        return [self.pol[n] for n in self.evaluated[arm]]

    def gold(self, arm: str) -> np.ndarray:
        return _per_prompt(self.entries(arm), "gold_per_prompt", "gold_mean")

    def diff(self, arm: str) -> tuple[float, list[float], str]:
        """The arm's difference to the baseline, its 95 % interval and what the interval resamples."""
        if not self.diffs:  # summary numbers only: the evaluation's own paired interval
            key = f"gold_diff_vs_{self.baseline}"
            entries = self.entries(arm)
            return entries[0][key], entries[0][f"{key}_ci95"], "prompts only (paired bootstrap of the evaluation)"
        d = self.diffs[arm]
        return d.diff, [d.lo, d.hi], d.method

    def versus(self, arm: str, other: str) -> list[float]:
        """[difference, 2.5 %, 97.5 %] of ``arm`` against ``other``, over prompts and seeds."""
        d = differences({arm: self.golds[arm], other: self.golds[other]}, other, self.seed_var,
                        untrained=self.untrained)[arm]
        return [d.diff, d.lo, d.hi]

    def recovery(self, arm: str, oracle: str | None, baseline: str | None = None) -> dict | None:
        """The arm's gap recovery against ``oracle`` (both read against ``baseline``, default the
        experiment's): {ratio, ci95, resolved}; None without per-prompt numbers or an evaluated oracle."""
        baseline = baseline or self.baseline
        if not self.diffs or not self.evaluated.get(oracle) or baseline in (arm, oracle):
            return None
        r = gap_recovery(self.golds, baseline, arm, oracle, self.seed_var, untrained=self.untrained)
        return {"ratio": r.ratio if r.resolved else None, "ci95": [r.lo, r.hi] if r.resolved else None,
                "resolved": r.resolved}

    def summary_recovery(self, delta: float, oracle: str | None) -> float | None:
        """Without per-prompt numbers: the ratio when the oracle's own interval lies above zero."""
        if not self.evaluated.get(oracle):
            return None
        d, ci, _ = self.diff(oracle)
        return delta / d if ci[0] > 0 else None

    def matched(self, arm: str, m: str | None) -> dict | None:
        """The arm against its matched baseline, and the gap recovery at equal training."""
        if m is None or not self.diffs or not self.evaluated.get(m) or arm == m:
            return None
        d, lo, hi = self.versus(arm, m)
        o = self.run.oracle_of(self.by_name[arm])
        od = self.versus(o, m) if self.evaluated.get(o) else None
        rec = self.recovery(arm, o, m) if od else None
        return {"arm": m, "diff": d, "ci95": [lo, hi], "oracle": o, "oracle_diff": od[0] if od else None,
                "oracle_ci95": od[1:] if od else None, "gap_recovery": rec["ratio"] if rec else None,
                "gap_recovery_ci95": rec["ci95"] if rec else None}


def _kl(entries: list[dict]) -> tuple[np.ndarray, list | None]:
    kl = _per_prompt(entries, "kl_per_prompt", "kl_to_baseline")
    ci = (list(two_level_bootstrap(kl, np.zeros((1, kl.shape[1])), BOOTSTRAP, 0)[1:]) if kl.shape[1] > 1
          else entries[0].get("kl_to_baseline_ci95"))
    return kl, ci


def _diagnostics(results: list, first: dict) -> dict:
    """The arm's own diagnostics (weights, labels), over its replicates where they are per replicate."""
    auc = (first.get("domain_auc_before"), first.get("domain_auc_after"))
    return {"ess_fraction": first.get("ess_fraction"), "domain_auc": list(auc) if auc[0] is not None else None,
            "label_accuracy": _mean(r.diagnostics.get("label_accuracy") for r in results),
            "label_accuracy_by_round": _rounds_mean([r.diagnostics for r in results]),
            "head_agreement_by_round": _rounds_mean([r.diagnostics for r in results], "head_agreement"),
            "spread_auroc_by_round": _rounds_mean([r.diagnostics for r in results], "spread_auroc"),
            "spread_auroc_ci95_by_round": _rounds_interval([r.diagnostics for r in results], "spread_auroc_ci95"),
            "pseudo_pairs": first.get("pseudo_pairs")}


def frontier_of(arm, r: Readings) -> list[dict]:
    """The arm's earlier trajectory points (``experiment.points``; a warm-started arm's first is the policy it
    starts from), each averaged over the replicates that have it (by position), then its final policy: label, replicates, mean gold with its gain over the initial
    policy (95 % interval over prompts and seeds), mean KL to the initial policy with its interval."""
    run, names = r.run, r.evaluated[arm.name]
    per_replicate = [run.results[n].points for n in names]
    if not r.golds or not any(per_replicate):
        return []
    initial = next((a.name for a in run.arms if a.role == "reference" and r.evaluated[a.name]), None)
    out = []
    start = _start(arm, r)
    if start is not None:
        out.append(_point(start.label, start.gold, start.kl, initial, r))
    for i in range(max(map(len, per_replicate))):
        pts = [p[i] for p in per_replicate if i < len(p)]
        out.append(_point(pts[0]["label"], np.array([p["gold_per_prompt"] for p in pts], np.float64),
                          np.array([p["kl_per_prompt"] for p in pts], np.float64), initial, r))
    out.append(_point("end", r.golds[arm.name], _per_prompt(r.entries(arm.name), "kl_per_prompt", "kl_to_baseline"),
                      initial, r))
    return out


def _point(label: str, gold: np.ndarray, kl: np.ndarray, initial: str | None, r: Readings) -> dict:
    point = {"label": label, "seeds": len(gold), "gold": float(gold.mean()), "kl": float(kl.mean()),
             "kl_ci95": list(two_level_bootstrap(kl, np.zeros((1, kl.shape[1])), BOOTSTRAP, 0)[1:])}
    if initial is not None and gold.shape[1] == r.golds[initial].shape[1]:
        d = differences({"point": gold, initial: r.golds[initial]}, initial, r.seed_var, untrained=r.untrained)["point"]
        point.update(gain_over_initial=d.diff, gain_ci95=[d.lo, d.hi])
    return point


def _start(arm, r: Readings) -> Point | None:
    """A warm-started arm's first trajectory point: the final policy of the arm it starts from, for each of its
    replicates the one training picked (the replicate of the same seed, else the first); None for an arm that
    starts from the initial policy or whose start has no per-prompt numbers."""
    start, names = start_arm(arm.options), r.evaluated.get(arm.name) or []
    if not start or not names or not r.evaluated.get(start) or not all("kl_per_prompt" in e for e in r.entries(start)):
        return None
    pick = [k if k < len(r.evaluated[start]) else 0 for k in range(len(names))]
    return Point(f"start ({start})", 1e-9, r.golds[start][pick],  # trained: it shares the arm's seed
                 _per_prompt(r.entries(start), "kl_per_prompt", "kl_to_baseline")[pick])


def curve_of(arm, r: Readings) -> Curve | None:
    """The arm's gold-against-KL curve (``experiment.frontier``): the initial policy, for a warm-started arm the
    final policy of the arm it starts from (each replicate's own start: the replicate of the same seed, else the
    first, as training picks it), the trajectory points every replicate has, the final policy; None without
    per-prompt numbers or an evaluated initial policy."""
    run, names = r.run, r.evaluated.get(arm.name) or []
    initial = next((a.name for a in run.arms if a.role == "reference" and r.evaluated[a.name]), None)
    if (not r.golds or not names or initial is None or arm.role == "reference"
            or not all("kl_per_prompt" in e for e in r.entries(arm.name))):
        return None
    g0 = r.golds[initial]
    points = [Point("initial", 0.0, g0, np.zeros_like(g0))]
    start = _start(arm, r)
    if start is not None:
        points.append(start)
    per_replicate = [run.results[n].points for n in names]
    n = min(map(len, per_replicate))
    for i in range(n):
        points.append(Point(per_replicate[0][i]["label"], (i + 1) / (n + 1),
                            np.array([p[i]["gold_per_prompt"] for p in per_replicate], np.float64),
                            np.array([p[i]["kl_per_prompt"] for p in per_replicate], np.float64)))
    points.append(Point("end", 1.0, r.golds[arm.name],
                        _per_prompt(r.entries(arm.name), "kl_per_prompt", "kl_to_baseline")))
    return Curve(arm.name, tuple(points))


def matched_kl_rows(arm, r: Readings) -> list[dict]:
    """The arm (a method or an oracle) against the source-only frontier (frontier.py, eq. 1: the best
    mixture of every source-only arm's points within the KL) at its own KL and at 1/2 and 1/4 of it: differences with 95 % intervals over
    prompts and seeds; a KL the frontier does not reach is replaced by the largest it reaches, and the
    note says so."""
    if arm.role not in ("method", "oracle") or not r.baseline_curves:
        return []
    curve = curve_of(arm, r)
    if curve is None:
        return []
    out, seen = [], set()
    found = matched_kl(curve, r.baseline_curves, at=default_levels(curve), seed_var=r.seed_var, n=BOOTSTRAP)
    for m in sorted(found, key=lambda m: m.asked != "own"):  # levels capped to one KL are read once, as "own"
        if round(m.kl, 12) in seen:
            continue
        seen.add(round(m.kl, 12))
        out.append({"asked": m.asked, "kl": m.kl, "diff": m.diff, "ci95": [m.lo, m.hi], "method_gold": m.method_gold,
                    "baseline_gold": m.baseline_gold, "baseline_arm": m.baseline_arm, "capped": m.capped,
                    "note": m.note, "ci95_method": m.method})
    return sorted(out, key=lambda m: m["kl"])


def arm_row(arm, r: Readings) -> dict:
    """One arm's row (see the module docstring)."""
    run, names = r.run, r.evaluated[arm.name]
    seconds = sum(run.seconds(f"arm_{n}") or 0.0 for n in run.replicates(arm)) or None
    first = run.results[run.replicates(arm)[0]]
    if not names:
        return {"arm": arm.name, "failed": first.failed or "no policy", "seconds": seconds}
    entries, is_base = r.entries(arm.name), arm.name == r.baseline
    delta, ci, method = r.diff(arm.name)
    rec = None if is_base else r.recovery(arm.name, run.oracle_of(arm))
    gap_recovery = 0.0 if is_base else rec["ratio"] if rec else r.summary_recovery(delta, run.oracle_of(arm))
    gold = r.gold(arm.name)
    kl, kl_ci = _kl(entries)
    extra_kl = float(kl.mean()) - r.base_kl if r.base_kl is not None else None
    row = {"arm": arm.name, "seeds": len(names), "gold": float(gold.mean()), "diff": delta, "ci95": ci,
           "ci95_method": method, "gap_recovery": gap_recovery, "gap_recovery_ci95": rec["ci95"] if rec else None,
           "oracle": run.oracle_of(arm),
           "seed_sd": seed_spread(gold), "win_rate": _mean(e["win_rate_vs_baseline"] for e in entries),
           "kl": float(kl.mean()), "kl_ci95": kl_ci,
           "gain_per_nat": delta / extra_kl if not is_base and extra_kl and extra_kl > 0 else None,
           "rm_accuracy": _mean(e.get("reward_model_accuracy") for e in entries),
           **_diagnostics([run.results[n] for n in names], first.diagnostics), "seconds": seconds}
    if arm.name in r.family_ci:
        row["ci95_family"] = [r.family_ci[arm.name].lo, r.family_ci[arm.name].hi]
    if arm.name in r.family and r.diffs:
        row["vs_control"] = {c: r.versus(arm.name, c) for c in r.controls}
    m = r.matched(arm.name, arm.matched_baseline)
    if m:
        row["matched"] = m
    frontier = frontier_of(arm, r)
    if frontier:
        row["frontier"] = frontier
    at_kl = matched_kl_rows(arm, r)
    if at_kl:
        row["matched_kl"] = at_kl
    return row


def arm_rows(run: ExperimentRun, readings: Readings | None = None) -> list[dict]:
    """One row per arm of the run, in config order. Differences and their intervals are over prompts and
    seeds (``experiment.statistics``)."""
    readings = readings or Readings(run)
    return [arm_row(a, readings) for a in run.arms]


def seed_variance_record(readings: Readings) -> dict | None:
    """The pooled training-seed variance the intervals use, for results.json (None: unknown)."""
    sv = readings.seed_var
    if sv is None:
        return None
    return {"sd": None if sv.value is None else float(np.sqrt(sv.value)), "variance": sv.value, "df": sv.df,
            "pooled_over": list(sv.arms)}
