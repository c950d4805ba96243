"""How far each evaluated policy of an experiment carries a surface cue, beside its gold and KL.

The format regime of the shift data (``data/shift/build_default.py``) labels its source pairs by a rater
who favours responses over several lines, a cue gold does not reward. This reads an experiment's output
directory: for every policy in each ``evaluation.json`` under it (the frontier points and the final
policies), the share of its evaluation samples that carry the cue (a line break), its mean gold and its
KL to the initial policy, so that a reader sees whether an arm drifts toward the cue as it moves.

    python bench/cue_drift.py runs/shift_format [--out bench/results/NAME.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def has_cue(response: str) -> bool:
    """The format regime's cue, as ``formatted`` in ``data/shift/build_default.py``: a line break."""
    return "\n" in response


def policy_rows(run_dir: Path) -> list[dict]:
    """One row per evaluated policy whose samples file is on disk, sorted by name."""
    rows = []
    for evaluation in sorted(run_dir.rglob("evaluation.json")):
        report = json.loads(evaluation.read_text(encoding="utf-8"))
        for name, policy in report.get("policies", {}).items():
            samples = evaluation.parent / "samples" / f"{name}.jsonl"
            if not samples.exists():
                continue
            completions = [json.loads(line)["completion"] for line in samples.read_text(encoding="utf-8").splitlines()]
            kl = policy.get("kl_per_prompt") or []
            rows.append({"policy": name, "samples": len(completions),
                         "cue_share": sum(map(has_cue, completions)) / max(len(completions), 1),
                         "gold": policy.get("gold_mean"), "kl": sum(kl) / len(kl) if kl else 0.0})
    return sorted(rows, key=lambda r: r["policy"])


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    rows = policy_rows(args.run_dir)
    print("| policy | samples | share with a line break | gold | KL to initial |\n| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['policy']} | {r['samples']} | {r['cue_share']:.3f} | {r['gold']:.3f} | {r['kl']:.2f} |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return rows


if __name__ == "__main__":
    main()
