"""Named, cached steps of a long job (the pipeline, the shift benchmark).

``Stages(root, total)(name, fn)`` runs ``fn`` once: its result (a JSON-able dict) is written
atomically to ``<root>/stages/<name>.json`` with the seconds it took, and a later call with the same
name returns the stored result without running ``fn``. A stage interrupted before its marker is
written runs again; each stage's own work (sampling, training) resumes inside it.

Finished stages are reused only under the configuration that made them: the first stage records a
fingerprint of the job's config (display-only keys such as ``progress`` left out), and a rerun with a
different config in the same directory stops with an error rather than mixing results.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

from ..errors import ConfigError
from ..io import write_json_atomic, write_text_atomic

IGNORED = {"progress"}  # keys that change how a job looks, not what it computes


def config_fingerprint(cfg) -> str:
    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in IGNORED}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    tree = strip(dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else cfg)
    return hashlib.sha256(json.dumps(tree, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Stages:
    def __init__(self, root: Path, total: int, log=print, config=None):
        self.root, self.total, self.log = Path(root), total, log
        self.records: list[dict] = []  # one flat summary per stage, in order, for reports
        if config is not None:
            fp, stored = config_fingerprint(config), self.root / "stages" / "config.fingerprint"
            if stored.exists() and stored.read_text().strip() != fp:
                raise ConfigError(f"{self.root} holds stages made under another configuration (fingerprint "
                                  f"{stored.read_text().strip()}, now {fp}): use another output_dir, or delete it to start over")
            write_text_atomic(stored, fp + "\n")

    def __call__(self, name: str, fn) -> dict:
        marker = self.root / "stages" / f"{name}.json"
        n = len(self.records) + 1
        if marker.exists():
            info = json.loads(marker.read_text())
            self.log(f"[shiftalign] stage {n}/{self.total} {name}: done earlier ({info.get('seconds', 0):.0f} s), skipped")
        else:
            self.log(f"[shiftalign] stage {n}/{self.total} {name} ...")
            t0 = time.perf_counter()
            info = fn() or {}
            info["seconds"] = time.perf_counter() - t0
            write_json_atomic(marker, info)
        self.records.append({"stage": name, "seconds": info["seconds"],
                             **{k: v for k, v in info.items() if k != "seconds" and not isinstance(v, (dict, list))}})
        return info
