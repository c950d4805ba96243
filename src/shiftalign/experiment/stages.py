"""Named, cached steps of a long job (an experiment).

``Stages(root, total, config)(name, fn, key=..., clear=...)`` runs ``fn`` once: its result (a JSON-able
dict) is written atomically to ``<root>/stages/<name>.json`` with the seconds it took and the stage's
``key``, and a later call with the same name and key returns the stored result without running ``fn``.
A stage interrupted before its marker is written runs again; each stage's own work (sampling,
training) resumes inside it.

Two levels of configuration (CONTRIBUTING.md, rules 11 and 12: caches key on content, a directory belongs to
one configuration):
- the job's directory is claimed for its *shared* settings (``rundir.claim``): a rerun under other
  shared settings stops with an error (or, with ``--restart``, starts over) rather than mixing results;
- a stage's ``key`` fingerprints what that stage alone depends on (an experiment arm: its options, its
  seed replicate and the keys of the arms it builds on). A stage whose key changed runs again after its
  ``clear`` directories are emptied; a stage that was not asked for again is left as it is. So an arm
  can be added to, or changed in, a finished experiment, and only that arm (and what depends on it) runs.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

from ..io import read_text, write_json_atomic
from ..log import log
from ..rundir import claim


def stage_key(value) -> str:
    """A fingerprint of a JSON-able value (e.g. an arm's options and what they build on)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Stages:
    def __init__(self, root: Path, total: int, config=None):
        self.root, self.total = Path(root), total
        self.records: list[dict] = []  # one flat summary per stage, in order, for reports
        if config is not None:
            claim(self.root, config)

    def __call__(self, name: str, fn, key: str | None = None, clear: tuple[Path, ...] = ()) -> dict:
        marker = self.root / "stages" / f"{name}.json"
        n = len(self.records) + 1
        info = json.loads(read_text(marker)) if marker.exists() else None
        if info is not None and info.get("stage_key") == key:
            log(f"stage {n}/{self.total} {name}: done earlier ({info.get('seconds', 0):.0f} s), skipped")
        else:
            if info is not None:  # made under other settings of this stage: its outputs go, then it runs again
                log(f"stage {n}/{self.total} {name}: its settings changed since it ran; running it again")
                marker.unlink()
                for d in clear:
                    if Path(d).exists():
                        shutil.rmtree(d)
            log(f"stage {n}/{self.total} {name} ...")
            t0 = time.perf_counter()
            info = fn() or {}
            info["seconds"] = time.perf_counter() - t0
            if key is not None:
                info["stage_key"] = key
            write_json_atomic(marker, info)
        self.records.append({"stage": name, "seconds": info["seconds"],
                             **{k: v for k, v in info.items()
                                if k not in ("seconds", "stage_key") and not isinstance(v, (dict, list))}})
        return info
