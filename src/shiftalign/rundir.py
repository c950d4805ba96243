"""An output directory belongs to one configuration (CONTRIBUTING.md, rule 12).

:func:`claim` is called by every command that writes a directory, after its config and its data
have been validated and before it writes anything there. It records ``run.json`` — a fingerprint of
the resolved config and the config itself — in a new or empty directory; in a directory made under
the same config it returns (the run resumes); in a directory made under another config, or holding
files but no ``run.json``, it stops with a one-line message naming the keys that differ, unless the
user asked to start over (``shiftalign ... --restart``), in which case the old contents are removed
first, never mixed with the new run's.

Keys that cannot change results (progress bars, logging and checkpoint cadence, trackers, the
output directory's own name) are left out of the fingerprint. A directory made by an older shiftalign
whose config lacks a field added since is the same configuration when the new field has its default
value (a new field's default keeps the behaviour from before it); its ``run.json`` is then brought up
to date.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

from .errors import ConfigError
from .io import write_json_atomic

IGNORED = {"progress", "log_every", "save_every", "keep_checkpoints", "keep_optimizer_state", "report_to", "resume",
           "output_dir", "output", "cache_dir", "reference_batch_size", "reuse"}
MARKER = "run.json"

_restart: contextvars.ContextVar[bool] = contextvars.ContextVar("restart", default=False)


@contextlib.contextmanager
def restart_allowed(flag: bool = True):
    """Within this block, :func:`claim` clears a directory of another configuration instead of refusing it."""
    token = _restart.set(flag)
    try:
        yield
    finally:
        _restart.reset(token)


def flat_config(cfg) -> dict:
    """The config as dotted keys -> values, ignored keys left out."""
    tree = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else cfg
    out: dict = {}

    def walk(node, prefix):
        if isinstance(node, dict) and node:
            for k, v in node.items():
                if k not in IGNORED:
                    walk(v, f"{prefix}{k}.")
        else:
            out[prefix[:-1]] = node

    walk(tree, "")
    return json.loads(json.dumps(out, default=str))


def fingerprint(cfg) -> str:
    return hashlib.sha256(json.dumps(flat_config(cfg), sort_keys=True).encode()).hexdigest()[:16]


def _differences(old: dict, new: dict, limit: int = 4) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k, "<unset>") != new.get(k, "<unset>"))
    shown = [f"{k} {old.get(k, '<unset>')!r} -> {new.get(k, '<unset>')!r}" for k in keys[:limit]]
    return ", ".join(shown) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _same_but_new_defaults(old: dict, new: dict, cfg) -> bool:
    """Whether ``new`` equals ``old`` once each key ``old`` lacks is read as its field's default."""
    try:
        defaults = flat_config(type(cfg)()) if dataclasses.is_dataclass(cfg) else {}
    except TypeError:  # a config class with required fields: no defaults to read
        return False
    missing = object()
    return set(old) <= set(new) and all(old.get(k, defaults.get(k, missing)) == v for k, v in new.items())


def claim(directory: str | Path, cfg, is_main: bool = True, wait=None) -> bool:
    """Make ``directory`` this config's (see the module docstring). True when it resumes an earlier run.

    Under several processes each one calls it with ``wait`` (a barrier): every process reads the directory
    before ``wait`` and only the main one writes after it, so no process reads a directory half-written by
    another (a freshly made directory holding only the marker's temporary file would read as foreign)."""
    root = Path(directory)
    fp, flat = fingerprint(cfg), flat_config(cfg)
    action, problem = _state(root, fp, flat, cfg)
    if problem is not None and not _restart.get():
        raise ConfigError(f"{problem}; use another output directory, or --restart to remove its contents and start over")
    if wait is not None:
        wait()
    if is_main and action == "clear":
        for child in root.iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    if is_main and action != "resume":
        root.mkdir(parents=True, exist_ok=True)
        write_json_atomic(root / MARKER, {"fingerprint": fp, "config": flat})
    return action in ("resume", "update")


def _state(root: Path, fp: str, flat: dict, cfg) -> tuple[str, str | None]:
    """What :func:`claim` does with ``root``, read without writing: ``resume`` (same config), ``update`` (same
    config but for new defaults: the marker is rewritten), ``new`` (no or an empty directory) or ``clear``
    (another config's or foreign files; the problem is said, and only ``--restart`` goes on)."""
    marker = root / MARKER
    if marker.is_file():
        stored = json.loads(marker.read_text(encoding="utf-8"))
        if stored.get("fingerprint") == fp:
            return "resume", None
        if _same_but_new_defaults(stored.get("config", {}), flat, cfg):
            return "update", None
        return "clear", f"{root} was made under another configuration (differs in: {_differences(stored.get('config', {}), flat)})"
    if root.is_dir() and any(root.iterdir()):
        return "clear", f"{root} holds files that no shiftalign run of this kind wrote (no {MARKER})"
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{root}: expected a directory for the outputs, found a file")
    return "new", None
