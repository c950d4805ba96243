"""An experiment's rows as the reader sees them: three significant digits, units in the headers, the arms
table of results.md, and the report's three tables of the arms (gold and KL; diagnostics; matched KL), split so
that they fit a laptop's window; and the tables of gold-free selection (``experiment.selection``)."""

from __future__ import annotations

COLUMNS = ["arm", "seeds", "gold", "diff", "ci95", "ci95_family", "gap_recovery", "matched", "seed_sd", "win_rate", "kl", "kl_ci95",
           "gain_per_nat", "rm_accuracy", "ess_fraction", "domain_auc", "label_accuracy", "pseudo_pairs", "seconds"]
HEADERS = {"arm": "arm", "seeds": "seeds", "gold": "gold reward", "diff": "Δ gold vs {base}", "ci95": "Δ 95 % CI", "ci95_family": "Δ 95 % CI, family-wise",
           "gap_recovery": "gap recovery", "matched": "Δ vs its matched baseline (gap recovery)", "seed_sd": "seed-to-seed sd", "win_rate": "win rate vs {initial}",
           "kl": "KL to {initial} (nats)", "kl_ci95": "KL 95 % CI", "gain_per_nat": "Δ gold per nat beyond {base}",
           "rm_accuracy": "RM accuracy on its samples", "ess_fraction": "ESS/N",
           "domain_auc": "domain AUC before → after", "label_accuracy": "label accuracy", "pseudo_pairs": "pseudo-pairs",
           "seconds": "time (min)"}


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
            out[c] = (f"{interval_text(v)} vs {v['arm']} ({recovery_text(v)})" if v else "–")
        elif c == "gap_recovery":
            out[c] = recovery_text(row)
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


def interval_text(r: dict) -> str:
    return f"{num(r['diff'], True)} {num(r['ci95'], True)}"


def recovery_text(r: dict) -> str:
    """A gap recovery with its interval where it has one."""
    ci = r.get("gap_recovery_ci95")
    return num(r.get("gap_recovery")) + (f" {num(ci)}" if ci and r.get("gap_recovery") is not None else "")


SELECTION_HEADERS = ["selector", "pick", "its estimate", "gold of the pick", "gold-best candidate", "its gold",
                     "regret (gold-best − pick)", "regret 95 % CI (prompts)", "why"]
CANDIDATE_HEADERS = ["candidate", "KL to {initial} (nats)", "RM score", "RM lower bound", "member sd", "ESS/N",
                     "left out by", "gold reward"]


def selection_rows(sel: dict) -> list[list[str]]:
    """One row per selector of gold-free selection (``experiment.selection.grade``): its pick beside the
    gold-best candidate, the regret with its interval, and why it picked or abstained."""
    return [[name, s["pick"] or "abstains", num(s["estimate"]), num(s["gold"]), sel["gold_best"] or "–",
             num(sel["gold_best_gold"]), num(s["regret"]), num(s["regret_ci95"]), s["reason"]]
            for name, s in sel["selectors"].items()]


def candidate_rows(sel: dict) -> list[list[str]]:
    """One row per scored candidate: its gold-free evidence, the selectors that left it out, its gold."""
    return [[c["name"], num(c["kl"]), num(c["score"]), num(c["lcb"]), num(c["spread"]), num(c["ess_fraction"]),
             ", ".join(n for n, s in sel["selectors"].items() if c["name"] in s["excluded"]) or "–", num(c["gold"])]
            for c in sel["candidates"]]


def selection_markdown(sel: dict) -> str:
    """The selectors' table for results.md, or why there is none."""
    if "skipped" in sel:
        return f"Gold-free selection: none ({sel['skipped']})."
    rows = [SELECTION_HEADERS, ["---"] * len(SELECTION_HEADERS), *selection_rows(sel)]
    return "Gold-free selection among the candidate policies (no gold read by the selectors):\n\n" + \
        "\n".join("| " + " | ".join(r) + " |" for r in rows)


def selection_tables(sel: dict, initial: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """Gold-free selection in the report: each selector's pick beside the gold-best candidate; the candidates."""
    if "skipped" in sel:
        return []
    return [("Gold-free selection: each selector's pick and its regret against the gold-best candidate",
             SELECTION_HEADERS, selection_rows(sel)),
            ("Gold-free selection: the candidates' evidence (and their gold, which no selector reads)",
             [h.format(initial=initial) for h in CANDIDATE_HEADERS], candidate_rows(sel))]


def selection_note(sel: dict) -> str:
    if "skipped" in sel:
        return f"Gold-free selection: none ({sel['skipped']})."
    rules = "; ".join(f"`{n}`: {s['rule']}" for n, s in sel["selectors"].items())
    unscored = sel.get("unscored") or {}
    return (f"Gold-free selection (experiment.selection) among {len(sel['candidates'])} candidate policies (the "
            f"trajectory points and final policies of the method and source-only arms), from the reward model's "
            f"scores of each one's evaluation samples ({sel.get('members')} member(s)) and the overlap ESS/N of its "
            f"training responses with them; {rules}. Regret = gold of the gold-best candidate − gold of the pick, its "
            f"95 % interval a paired bootstrap over prompts with the two candidates fixed."
            + (f" Not scored: {'; '.join(f'{k} ({v})' for k, v in unscored.items())}." if unscored else ""))
