"""The verdict of an experiment, written from its rows (``experiment.results``): the best method arm with its
own and its family-wise interval, against the controls, the source-only frontier at matched KL and the oracles,
and one line of diagnosis per arm. Every sentence follows an interval: "resolved" only when it lies above
zero, "at least half of the gap" only when the gap recovery's lies at or above 0.5, "no gap any method could
recover" when an oracle does not beat the source-only frontier at its own KL."""

from __future__ import annotations

from .tables import interval_text, num, recovery_text


def _half(r: dict) -> str:
    """What the gap recovery's interval says of recovering at least half of the gap."""
    ci = r.get("gap_recovery_ci95")
    if not ci:
        return ""
    return (" (at least half of it: the interval's lower end is at or above 0.5)" if ci[0] >= 0.5 else
            " (that it recovers at least half is not supported: the interval reaches below 0.5)")


def _oracle_reading(o: dict, oracle: str, baseline: str) -> str:
    """The oracle's gain, in words that follow its interval."""
    head = f"The oracle `{oracle}` (gold labels on the target) gains {interval_text(o)} over `{baseline}`: "
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
    parts = [f"`{r['arm']}`: {interval_text(r)}"]
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
    auroc = [(a, ci) for a, ci in zip(r.get("spread_auroc_by_round") or [], r.get("spread_auroc_ci95_by_round") or [])
             if a is not None]
    if auroc:
        parts.append("the heads' spread flags a wrong label with AUROC " + " → ".join(
            num(a) + (f" {num(ci)}" if ci else "") for a, ci in auroc) + (" by round" if len(auroc) > 1 else ""))
    if r.get("rm_accuracy") is not None and kind == "rl":
        parts.append(f"reward-model accuracy on its samples {num(r['rm_accuracy'])}")
    if r.get("kl") is not None:
        parts.append(f"KL {num(r['kl'])} {num(r.get('kl_ci95'))} nats")
    if r.get("matched"):
        parts.append(f"vs its matched baseline `{r['matched']['arm']}` {interval_text(r['matched'])}")
    return "; ".join(parts)


def matched_sentence(r: dict, m_row: dict, baseline: str) -> str:
    """The arm against its matched baseline (trained as long, no information about the target) and its gap
    recovery at equal training."""
    m = r["matched"]
    text = (f"Its matched baseline `{m['arm']}` (trained as long, without information about the target) is at "
            f"{interval_text(m_row)} over `{baseline}`; at equal training `{r['arm']}` is at {interval_text(m)} against it "
            f"({_resolved(m)})")
    if m.get("oracle_diff") is None:
        text += "."
    else:
        text += f" and its oracle `{m['oracle']}` at {num(m['oracle_diff'], True)} {num(m['oracle_ci95'], True)}"
        text += (f", so it recovers {recovery_text(m)} of that gap{_half(m)}." if m.get("gap_recovery") is not None
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
    against the source-only frontier at its own KL does not lie above zero. Not read where the frontier stops
    short of the oracle's KL (``capped``): there the question is not measured."""
    own = next((m for m in o.get("matched_kl") or [] if m["asked"] == "own"), None)
    return own is not None and not own.get("capped") and own["ci95"][0] <= 0


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
        lead = (f"Best method arm on the gold reward ({gold}): `{best['arm']}`, {interval_text(best)} against "
                f"`{baseline}` ({_resolved(best)})." if best["diff"] > 0 else
                f"No method arm beats `{baseline}` on the gold reward ({gold}); the closest is `{best['arm']}`, "
                f"{interval_text(best)} ({_resolved(best)}).")
        if best.get("ci95_family"):
            lead += (f" Family-wise over the {len(methods)} method arms (the best of several is read with "
                     f"intervals that hold for all at once): {num(best['ci95_family'], True)} "
                     f"({_resolved(best, 'ci95_family')}).")
        for c in controls:
            if c["arm"] == (best.get("matched") or {}).get("arm"):
                continue  # read below, at equal training
            d = (best.get("vs_control") or {}).get(c["arm"])
            lead += f" The control `{c['arm']}` (no information about the target: what training alone does) is at {interval_text(c)}"
            lead += (f"; `{best['arm']}` against it: {num(d[0], True)} {num(d[1:], True)} "
                     f"({_resolved({'ci95': d[1:]})})." if d else ".")
        if best.get("matched_kl"):
            lead += (f" Against the source-only frontier (the best source-only arm at each KL) at matched KL, "
                     f"`{best['arm']}` is {at_matched_kl(best)}.")
        lines.append(lead)
    for o in (r for r in ok.values() if roles.get(r["arm"]) == "oracle" and r.get("matched_kl")):
        text = f"The oracle `{o['arm']}` against the source-only frontier: {at_matched_kl(o)}."
        own = next((m for m in o["matched_kl"] if m["asked"] == "own"), None)
        if own is not None and own.get("capped"):
            text += (" The source-only frontier does not reach the oracle's own KL, so whether gold labels beat more "
                     "source training there is not measured.")
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
                     f"{interval_text(ok[own])} over `{baseline}`: "
                     + ("no gap at matched KL (above), so no gap-recovery ratio." if no_gap(ok[own]) else
                        f"it recovers {recovery_text(best)} of that gap{_half(best)}." if best.get("gap_recovery") is not None
                        else "not resolved, so no gap-recovery ratio."))
    elif oracle in ok and best is not None and best.get("gap_recovery") is not None and not no_gap(ok[oracle]):
        lines[-1] += f" `{best['arm']}` recovers {recovery_text(best)} of the gap{_half(best)}."
    if oracle is None or oracle not in ok:
        lines.append("No oracle arm: whether labels of the target domain would help at all is not measured.")
    if best is not None and best.get("matched") and best["matched"]["arm"] in ok:
        lines.append(matched_sentence(best, ok[best["matched"]["arm"]], baseline))
    headline = [" ".join(lines)]
    failed = [f"`{r['arm']}`: no policy ({r['failed']})" for r in rows if "failed" in r]
    return headline + [diagnosis(r, kinds.get(r["arm"], "")) for r in methods + controls] + failed
