"""An experiment's numbers: one row per arm, the gap-recovery ratio and a verdict written from them.

Differences to the baseline and their 95 % intervals are over prompts *and* training seeds
(``experiment.statistics``, eq. 1): the variance of the per-prompt paired differences plus the
training-seed variance of each arm's mean, sigma^2 / S, with sigma^2 pooled over every trained arm of two or
more replicates (eq. 2), so an arm of one seed carries seed variance too; a t quantile on Satterthwaite's
degrees of freedom. With no multi-seed arm the seed variance is unknown and every row's ``ci95_method``
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

from .arms import source_only
from .frontier import Curve, Point, default_levels, matched_kl
from .run import ExperimentRun
from .seeds import seed_spread, two_level_bootstrap
from .statistics import differences, gap_recovery, pooled_seed_variance, simultaneous_differences

COLUMNS = ["arm", "seeds", "gold", "diff", "ci95", "ci95_family", "gap_recovery", "matched", "seed_sd", "win_rate", "kl", "kl_ci95",
           "gain_per_nat", "rm_accuracy", "ess_fraction", "domain_auc", "label_accuracy", "pseudo_pairs", "seconds"]
HEADERS = {"arm": "arm", "seeds": "seeds", "gold": "gold reward", "diff": "Δ gold vs {base}", "ci95": "Δ 95 % CI", "ci95_family": "Δ 95 % CI, family-wise",
           "gap_recovery": "gap recovery", "matched": "Δ vs its matched baseline (gap recovery)", "seed_sd": "seed-to-seed sd", "win_rate": "win rate vs {initial}",
           "kl": "KL to {initial} (nats)", "kl_ci95": "KL 95 % CI", "gain_per_nat": "Δ gold per nat beyond {base}",
           "rm_accuracy": "RM accuracy on its samples", "ess_fraction": "ESS/N",
           "domain_auc": "domain AUC before → after", "label_accuracy": "label accuracy", "pseudo_pairs": "pseudo-pairs",
           "seconds": "time (min)"}
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
            "pseudo_pairs": first.get("pseudo_pairs")}


def frontier_of(arm, r: Readings) -> list[dict]:
    """The arm's earlier trajectory points (``experiment.points``), each averaged over the replicates that
    have it (by position), then its final policy: label, replicates, mean gold with its gain over the initial
    policy (95 % interval over prompts and seeds), mean KL to the initial policy with its interval."""
    run, names = r.run, r.evaluated[arm.name]
    per_replicate = [run.results[n].points for n in names]
    if not r.golds or not any(per_replicate):
        return []
    initial = next((a.name for a in run.arms if a.role == "reference" and r.evaluated[a.name]), None)
    out = []
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


def curve_of(arm, r: Readings) -> Curve | None:
    """The arm's gold-against-KL curve (``experiment.frontier``): the initial policy, the trajectory points
    every replicate has, the final policy; None without per-prompt numbers or an evaluated initial policy."""
    run, names = r.run, r.evaluated.get(arm.name) or []
    initial = next((a.name for a in run.arms if a.role == "reference" and r.evaluated[a.name]), None)
    if (not r.golds or not names or initial is None or arm.role == "reference"
            or not all("kl_per_prompt" in e for e in r.entries(arm.name))):
        return None
    g0 = r.golds[initial]
    points = [Point("initial", 0.0, g0, np.zeros_like(g0))]
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
    """The arm (a method or an oracle) against the source-only frontier (the upper envelope of every
    source-only arm's curve) at its own KL and at 1/2 and 1/4 of it: differences with 95 % intervals over
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


def num(v, signed: bool = False) -> str:
    """Three significant digits; "–" for a value that does not apply."""
    if v is None:
        return "–"
    if isinstance(v, (bool, int, str)):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(num(x, signed) for x in v) + "]"
    text = f"{v:+.3g}" if signed else f"{v:.3g}"
    return text.replace("-", "−")


def minutes(seconds: float | None) -> str:
    return "–" if seconds is None else "< 0.01" if seconds < 0.6 else num(seconds / 60)


def cells(row: dict, baseline: str) -> dict:
    """A row as display strings (3 significant digits, units in the headers)."""
    if "failed" in row:
        return {c: row["arm"] if c == "arm" else minutes(row.get("seconds")) if c == "seconds" else "–"
                for c in COLUMNS}
    out = {}
    for c in COLUMNS:
        v = row.get(c)
        if c == "seconds":
            out[c] = minutes(v)
        elif row["arm"] == baseline and c in ("diff", "ci95", "ci95_family", "gap_recovery", "gain_per_nat"):
            out[c] = "0 (baseline)" if c == "diff" else "–"
        elif c == "domain_auc" and v:
            out[c] = f"{num(v[0])} → {num(v[1])}"
        elif c == "matched":
            out[c] = (f"{_interval(v)} vs {v['arm']} ({_recovery(v)})" if v else "–")
        elif c == "gap_recovery":
            out[c] = _recovery(row)
        else:
            out[c] = num(v, signed=c in ("diff", "ci95", "ci95_family"))
    return out


def headers(baseline: str, initial: str) -> list[str]:
    return [HEADERS[c].format(base=baseline, initial=initial) for c in COLUMNS]


# The report splits the arms table in two so that it fits a laptop's window (results.md keeps one table).
GOLD_COLUMNS = ["arm", "seeds", "gold", "diff", "ci95", "ci95_family", "gap_recovery", "matched", "kl", "kl_ci95",
                "win_rate"]
DIAGNOSTIC_COLUMNS = ["arm", "seed_sd", "gain_per_nat", "rm_accuracy", "ess_fraction", "domain_auc",
                      "label_accuracy", "pseudo_pairs", "seconds"]
MATCHED_KL_HEADERS = ["arm", "KL compared at (nats)", "Δ gold vs the source-only frontier", "Δ 95 % CI",
                      "best source-only arm there", "note"]


def arms_tables(rows: list[dict], baseline: str, initial: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """The report's tables of the arms: gold and KL; diagnostics; each method and oracle at matched KL."""
    head = dict(zip(COLUMNS, headers(baseline, initial)))
    shown = [cells(r, baseline) for r in rows]
    tables = [(title, [head[c] for c in cols], [[s[c] for c in cols] for s in shown])
              for title, cols in (("Arms: gold reward and KL", GOLD_COLUMNS), ("Arms: diagnostics", DIAGNOSTIC_COLUMNS))]
    at_kl = [[r["arm"], num(m["kl"]), num(m["diff"], True), num(m["ci95"], True), str(m.get("baseline_arm") or "–"),
              m.get("note") or "–"] for r in rows for m in r.get("matched_kl") or []]
    if at_kl:
        tables.append(("Methods and oracles against the source-only frontier at matched KL", MATCHED_KL_HEADERS, at_kl))
    return tables


def markdown_table(rows: list[dict], baseline: str, initial: str) -> str:
    head = "| " + " | ".join(headers(baseline, initial)) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    body = "".join("| " + " | ".join(cells(r, baseline).values()) + " |\n" for r in rows)
    failed = "".join(f"- `{r['arm']}` has no policy: {r['failed']}\n" for r in rows if "failed" in r)
    return head + body + ("\n" + failed if failed else "") + "\n– : does not apply to this arm.\n"


def _interval(r: dict) -> str:
    return f"{num(r['diff'], True)} {num(r['ci95'], True)}"


def _recovery(r: dict) -> str:
    """A gap recovery with its interval where it has one."""
    ci = r.get("gap_recovery_ci95")
    return num(r.get("gap_recovery")) + (f" {num(ci)}" if ci and r.get("gap_recovery") is not None else "")


def _half(r: dict) -> str:
    """What the gap recovery's interval says of recovering at least half of the gap."""
    ci = r.get("gap_recovery_ci95")
    if not ci:
        return ""
    return (" (at least half of it: the interval's lower end is at or above 0.5)" if ci[0] >= 0.5 else
            " (that it recovers at least half is not supported: the interval reaches below 0.5)")


def _oracle_reading(o: dict, oracle: str, baseline: str) -> str:
    """The oracle's gain, in words that follow its interval."""
    head = f"The oracle `{oracle}` (gold labels on the target) gains {_interval(o)} over `{baseline}`: "
    if o["ci95"][0] > 0:
        return head + "resolved, so gap-recovery ratios are reported."
    if o["ci95"][1] < 0:
        return head + ("worse: the interval lies below zero, so gold labels of the target do worse than the source "
                       "labels here and there is no gap for any method to recover; no gap-recovery ratio is read "
                       "against it.")
    return head + ("not resolved: at this budget gold labels of the target buy nothing measurable over the source "
                   "labels, so no gap-recovery ratio is read against it.")


def _resolved(r: dict, key: str = "ci95") -> str:
    lo, hi = r[key]
    return "resolved: the interval lies above zero" if lo > 0 else \
        "worse: the interval lies below zero" if hi < 0 else "not resolved: the interval contains zero"


def diagnosis(r: dict, kind: str) -> str:
    parts = [f"`{r['arm']}`: {_interval(r)}"]
    if r.get("ess_fraction") is not None:
        parts.append(f"ESS/N {num(r['ess_fraction'])}")
    if r.get("domain_auc"):
        parts.append(f"domain AUC {num(r['domain_auc'][0])} → {num(r['domain_auc'][1])}")
    if r.get("label_accuracy") is not None:
        by_round = r.get("label_accuracy_by_round") or []
        rounds = f" ({' → '.join(num(a) for a in by_round)} by round)" if len(by_round) > 1 else ""
        parts.append(f"label accuracy {num(r['label_accuracy'])} on {r.get('pseudo_pairs')} pseudo-pairs{rounds}")
    agreement = [a for a in r.get("head_agreement_by_round") or [] if a is not None]
    if agreement:
        parts.append(f"every head agrees on {' → '.join(num(a) for a in agreement)} of them"
                     + (" by round" if len(agreement) > 1 else ""))
    if r.get("rm_accuracy") is not None and kind == "rl":
        parts.append(f"reward-model accuracy on its samples {num(r['rm_accuracy'])}")
    if r.get("kl") is not None:
        parts.append(f"KL {num(r['kl'])} {num(r.get('kl_ci95'))} nats")
    if r.get("matched"):
        parts.append(f"vs its matched baseline `{r['matched']['arm']}` {_interval(r['matched'])}")
    return "; ".join(parts)


def matched_sentence(r: dict, m_row: dict, baseline: str) -> str:
    """The arm against its matched baseline (trained as long, no information about the target) and its gap
    recovery at equal training."""
    m = r["matched"]
    text = (f"Its matched baseline `{m['arm']}` (trained as long, without information about the target) is at "
            f"{_interval(m_row)} over `{baseline}`; at equal training `{r['arm']}` is at {_interval(m)} against it "
            f"({_resolved(m)})")
    if m.get("oracle_diff") is None:
        text += "."
    else:
        text += f" and its oracle `{m['oracle']}` at {num(m['oracle_diff'], True)} {num(m['oracle_ci95'], True)}"
        text += (f", so it recovers {_recovery(m)} of that gap{_half(m)}." if m.get("gap_recovery") is not None
                 else ": not resolved, so no gap-recovery ratio at equal training.")
    if r.get("kl") is not None and m_row.get("kl") is not None and r["kl"] > m_row["kl"]:  # equal steps, not equal KL
        text += (f" Equal training is not equal KL: it ends {num(r['kl'])} nats from the initial policy and "
                 f"`{m['arm']}` {num(m_row['kl'])}")
        text += (f"; per nat beyond `{baseline}` it gains {num(r['gain_per_nat'])} of gold, `{m['arm']}` "
                 f"{num(m_row['gain_per_nat'])}." if r.get("gain_per_nat") and m_row.get("gain_per_nat") else ".")
    return text


def at_matched_kl(r: dict) -> str:
    """The arm against the source-only frontier at its own KL and two lower ones, in one sentence."""
    parts = []
    for m in r.get("matched_kl") or []:
        where = f"at its own KL ({num(m['kl'])} nats)" if m["asked"] == "own" and not m["capped"] else \
            f"at {num(m['kl'])} nats"
        parts.append(f"{where} {num(m['diff'], True)} {num(m['ci95'], True)} ({_resolved(m).split(':')[0]})"
                     + (f" [{m['note']}]" if m["capped"] else ""))
    return "; ".join(parts)


def no_gap(o: dict) -> bool:
    """Gold labels of the target do not beat more source training at the same KL: the oracle's interval
    against the source-only frontier at its own KL does not lie above zero."""
    own = next((m for m in o.get("matched_kl") or [] if m["asked"] == "own"), None)
    return own is not None and own["ci95"][0] <= 0


def verdict(rows: list[dict], kinds: dict, baseline: str, oracle: str | None, gold: str,
            roles: dict[str, str] | None = None) -> list[str]:
    """A headline paragraph (best method arm with its own and its family-wise interval, against the
    controls, the oracle) and one diagnosis line per method arm. ``roles``: arm -> method | control |
    reference; without it every arm but the initial one counts as a method."""
    roles = roles or {}
    ok = {r["arm"]: r for r in rows if "failed" not in r}
    methods = [r for n, r in ok.items() if n not in (baseline, oracle) and kinds.get(n) != "initial"
               and roles.get(n, "method") == "method"]
    controls = [r for n, r in ok.items() if roles.get(n) == "control" and n != baseline]
    lines = []
    if baseline in ok and methods:
        best = max(methods, key=lambda r: r["gold"])
        lead = (f"Best method arm on the gold reward ({gold}): `{best['arm']}`, {_interval(best)} against "
                f"`{baseline}` ({_resolved(best)})." if best["diff"] > 0 else
                f"No method arm beats `{baseline}` on the gold reward ({gold}); the closest is `{best['arm']}`, "
                f"{_interval(best)} ({_resolved(best)}).")
        if best.get("ci95_family"):
            lead += (f" Family-wise over the {len(methods)} method arms (the best of several is read with "
                     f"intervals that hold for all at once): {num(best['ci95_family'], True)} "
                     f"({_resolved(best, 'ci95_family')}).")
        for c in controls:
            if c["arm"] == (best.get("matched") or {}).get("arm"):
                continue  # read below, at equal training
            d = (best.get("vs_control") or {}).get(c["arm"])
            lead += f" The control `{c['arm']}` (no information about the target: what training alone does) is at {_interval(c)}"
            lead += (f"; `{best['arm']}` against it: {num(d[0], True)} {num(d[1:], True)} "
                     f"({_resolved({'ci95': d[1:]})})." if d else ".")
        if best.get("matched_kl"):
            lead += (f" Against the source-only frontier (the best source-only arm at each KL) at matched KL, "
                     f"`{best['arm']}` is {at_matched_kl(best)}.")
        lines.append(lead)
    for o in (r for r in ok.values() if roles.get(r["arm"]) == "oracle" and r.get("matched_kl")):
        text = f"The oracle `{o['arm']}` against the source-only frontier: {at_matched_kl(o)}."
        if no_gap(o):
            text += (" Gold labels on the target do not beat more source training at the same KL: this regime has "
                     "no gap any method could recover, so no gap recovery against it is read.")
        lines.append(text)
    if oracle in ok:
        o = ok[oracle]
        lines.append(_oracle_reading(o, oracle, baseline))
    best = max(methods, key=lambda r: r["gold"], default=None)
    own = best.get("oracle") if best is not None else None
    if own is not None and own != oracle and own in ok:
        lines.append(f"`{best['arm']}` is read against its own oracle `{own}` (its recipe with gold labels), at "
                     f"{_interval(ok[own])} over `{baseline}`: "
                     + ("no gap at matched KL (above), so no gap-recovery ratio." if no_gap(ok[own]) else
                        f"it recovers {_recovery(best)} of that gap{_half(best)}." if best.get("gap_recovery") is not None
                        else "not resolved, so no gap-recovery ratio."))
    elif oracle in ok and best is not None and best.get("gap_recovery") is not None and not no_gap(ok[oracle]):
        lines[-1] += f" `{best['arm']}` recovers {_recovery(best)} of the gap{_half(best)}."
    if oracle is None or oracle not in ok:
        lines.append("No oracle arm: whether labels of the target domain would help at all is not measured.")
    if best is not None and best.get("matched") and best["matched"]["arm"] in ok:
        lines.append(matched_sentence(best, ok[best["matched"]["arm"]], baseline))
    headline = [" ".join(lines)]
    failed = [f"`{r['arm']}`: no policy ({r['failed']})" for r in rows if "failed" in r]
    return headline + [diagnosis(r, kinds.get(r["arm"], "")) for r in methods + controls] + failed
