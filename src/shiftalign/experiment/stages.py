"""Named, cached steps of a long job (an experiment).

``Stages(root, total)(name, fn)`` runs ``fn`` once: its result (a JSON-able dict) is written
atomically to ``<root>/stages/<name>.json`` with the seconds it took, and a later call with the same
name returns the stored result without running ``fn``. A stage interrupted before its marker is
written runs again; each stage's own work (sampling, training) resumes inside it.

Finished stages are reused only under the configuration that made them: the job's directory is
claimed for its config (``rundir.claim``), so a rerun with a different config in the same directory
stops with an error (or, with ``--restart``, starts over) rather than mixing results.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..io import read_text, write_json_atomic
from ..log import log
from ..rundir import claim


class Stages:
    def __init__(self, root: Path, total: int, config=None):
        self.root, self.total = Path(root), total
        self.records: list[dict] = []  # one flat summary per stage, in order, for reports
        if config is not None:
            claim(self.root, config)

    def __call__(self, name: str, fn) -> dict:
        marker = self.root / "stages" / f"{name}.json"
        n = len(self.records) + 1
        if marker.exists():
            info = json.loads(read_text(marker))
            log(f"stage {n}/{self.total} {name}: done earlier ({info.get('seconds', 0):.0f} s), skipped")
        else:
            log(f"stage {n}/{self.total} {name} ...")
            t0 = time.perf_counter()
            info = fn() or {}
            info["seconds"] = time.perf_counter() - t0
            write_json_atomic(marker, info)
        self.records.append({"stage": name, "seconds": info["seconds"],
                             **{k: v for k, v in info.items() if k != "seconds" and not isinstance(v, (dict, list))}})
        return info
