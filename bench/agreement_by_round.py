"""Does the reward-model ensemble's head agreement (``labeling.pairs.head_agreement``, label-free) track the
label accuracy against gold, round by round? For each round of each iterated arm directory given: the pairs'
head agreement, their label accuracy against the gold scorer, and the accuracy of the pairs on which every
head agrees against that of the pairs the heads split on (gold ties left out of every accuracy).

    python bench/agreement_by_round.py runs/shift_default/rm_iterative_warm runs/shift_default/rm_iterative_warm@1 \\
        --gold plain_language       # a markdown table on stdout; --out FILE.json for the numbers
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from shiftalign.data.text import text_of
from shiftalign.io import read_jsonl
from shiftalign.labeling.pairs import every_model_agrees, head_agreement
from shiftalign.rl.scorers import make_scorer


def accuracy(chosen: list[float], rejected: list[float], keep: list[bool]) -> tuple[float | None, int]:
    """Share of kept pairs whose chosen response has the higher gold score, and how many were decided."""
    decided = [c > r for c, r, k in zip(chosen, rejected, keep) if k and c != r]
    return (sum(decided) / len(decided) if decided else None), len(decided)


def round_row(pairs_file: Path, gold) -> dict:
    rows = read_jsonl(pairs_file)
    prompts = [text_of(r["prompt"]) for r in rows]
    chosen = gold(prompts, [text_of(r["chosen"]) for r in rows])
    rejected = gold(prompts, [text_of(r["rejected"]) for r in rows])
    unanimous = [bool(every_model_agrees(row)) for row in rows]
    out = {"pairs": len(rows), "head_agreement": head_agreement(rows)}
    for name, keep in (("all", [True] * len(rows)), ("unanimous", unanimous), ("split", [not u for u in unanimous])):
        out[f"accuracy_{name}"], out[f"decided_{name}"] = accuracy(chosen, rejected, keep)
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("arms", nargs="+", help="directories of iterated arms (each with round-N/labels/pseudo_pairs.jsonl)")
    ap.add_argument("--gold", required=True, help="a registered gold scorer, e.g. vader or plain_language")
    ap.add_argument("--out", help="also write the rows as JSON here")
    args = ap.parse_args(argv)
    gold = make_scorer({"name": args.gold})
    rows = []
    for arm in map(Path, args.arms):
        rounds = sorted(arm.glob("round-*/labels/pseudo_pairs.jsonl"), key=lambda p: int(p.parts[-3].split("-")[1]))
        if not rounds:
            raise SystemExit(f"{arm}: no round-N/labels/pseudo_pairs.jsonl below it")
        rows += [{"arm": arm.name, "round": int(p.parts[-3].split("-")[1]), **round_row(p, gold)} for p in rounds]

    def cell(r: dict, k: str) -> str:
        return "–" if r[f"accuracy_{k}"] is None else f"{r[f'accuracy_{k}']:.3f} ({r[f'decided_{k}']})"

    print("| gold | arm | round | head agreement | label accuracy (pairs) | every head agrees | heads split |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        agree = "–" if r["head_agreement"] is None else f"{r['head_agreement']:.3f}"
        print(f"| {args.gold} | {r['arm']} | {r['round']} | {agree} | {cell(r, 'all')} | {cell(r, 'unanimous')} "
              f"| {cell(r, 'split')} |")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
