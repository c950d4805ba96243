"""Reuse of a finished training run whose inputs are the same (CONTRIBUTING.md, rule 11: caches key on content).

A run with ``reuse: <dir>`` looks up its key in that directory before it trains, and records itself there
once it has finished. The key is the run's fingerprint (``rundir.fingerprint``: every setting that can
change results, the output directory left out) with every setting that names an existing file or
directory replaced by a digest of its contents: the training data, the weights file, the starting model
and the reference. Two runs with the same key compute the same thing, so the second one's ``model`` is the
first one's, hard-linked (copied where links are not possible) into its own output directory with the first
one's metrics and summary; nothing is trained. A recorded run whose model has since been deleted is
ignored, and the run trains.

In an experiment this removes trainings that different arms share: the learning-rate calibration's run
at the chosen rate is source-only DPO's first replicate, and round 1 of two iterated arms that differ only
from round 2 on (the reference of later rounds) is the same run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from ..config import dump_config
from ..io import atomic_path, write_json_atomic, write_text_atomic
from ..log import log
from ..rundir import flat_config

SKIPPED = {"checkpoints", "shiftalign_config.yaml"}  # not part of what a model directory computes


def content_digest(path: Path) -> str:
    """sha256 of a file, or of a directory's files (relative names and contents, sorted; checkpoints and
    the recorded config left out)."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and not SKIPPED & set(p.relative_to(path).parts))
    for f in files:
        if f != path:  # a directory's layout is part of its contents; a file's own name is not
            h.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


# Settings added after runs were first recorded, left out of the key at their default so that those records
# still match a run that does not use them.
ADDED_SINCE = {"train.snapshots": [], "train.sharding": "none"}


def run_key(cfg) -> str:
    """The run's settings with every existing path among them read as its contents' digest."""
    flat, digests = flat_config(cfg), {}
    flat = {k: v for k, v in flat.items() if k not in ADDED_SINCE or v != ADDED_SINCE[k]}
    for k, v in flat.items():
        if isinstance(v, str) and v and Path(v).exists():
            if v not in digests:  # a model named as policy and as reference is read once
                digests[v] = "sha256:" + content_digest(Path(v))
            flat[k] = digests[v]
    return hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()[:24]


def _link_tree(src: Path, dst: Path) -> None:
    def link(a, b):
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=link, ignore=shutil.ignore_patterns("shiftalign_config.yaml"))


def lookup(cfg, key: str) -> bool:
    """Link the recorded run of this key into ``cfg.output_dir`` (its model, metrics and summary); False when
    there is none to reuse."""
    entry = Path(cfg.reuse) / f"{key}.json"
    if not entry.is_file():
        return False
    src = Path(json.loads(entry.read_text())["run"])
    if not ((src / "summary.json").is_file() and (src / "model").is_dir()) or src.resolve() == Path(
            cfg.output_dir).resolve():
        return False
    snapshots = json.loads((src / "summary.json").read_text()).get("snapshots", [])
    if not all(Path(s).is_dir() for s in snapshots):  # its frontier snapshots are gone: train again
        return False
    out = Path(cfg.output_dir)
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    with atomic_path(out / "model") as tmp:
        _link_tree(src / "model", tmp)
        write_text_atomic(tmp / "shiftalign_config.yaml", dump_config(cfg))
    if (src / "metrics.jsonl").is_file():
        with atomic_path(out / "metrics.jsonl") as tmp:
            shutil.copyfile(src / "metrics.jsonl", tmp)
    for s in map(Path, snapshots):
        with atomic_path(out / "snapshots" / s.name) as tmp:
            _link_tree(s, tmp)
    # The summary (a TrainResult's fields) as recorded, pointing at this directory's model and snapshots.
    summary = {**json.loads((src / "summary.json").read_text()), "model": str(out / "model"),
               "snapshots": [str(out / "snapshots" / Path(s).name) for s in snapshots]}
    write_json_atomic(out / "reused.json", {"from": str(src), "key": key})
    write_json_atomic(out / "summary.json", summary)
    log(f"{out}: the same run as {src} (same settings, data and models): its model is reused, nothing trained")
    return True


def record(cfg, key: str) -> None:
    write_json_atomic(Path(cfg.reuse) / f"{key}.json", {"run": str(Path(cfg.output_dir))})
