"""Run the controlled domain-shift benchmark (see ``harness.py`` for the stages and arms).

    python bench/shift/run.py bench/shift/small.yaml            # small profile
    python bench/shift/run.py bench/shift/default.yaml          # default profile
    python bench/shift/run.py bench/shift/default.yaml output_dir=runs/other seed=1   # overrides

Rerunning the same command after an interruption continues where it stopped. Results:
``<output_dir>/results.md``, ``results.json`` and ``report.html``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from harness import ShiftBench, ShiftBenchConfig  # noqa: E402

from shiftalign.config import load_config  # noqa: E402
from shiftalign.errors import ShiftalignError  # noqa: E402


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    try:
        cfg = load_config(argv[0], argv[1:], ShiftBenchConfig)
        ShiftBench(cfg).run()
    except ShiftalignError as e:
        print(f"shift benchmark: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
