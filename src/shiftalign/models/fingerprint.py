"""Content fingerprints of models, for cache keys (CONTRIBUTING.md, rule 11: caches key on content, not names).

- :func:`files_fingerprint`: of a model directory on disk, from the bytes of every file in it
  (weights, config, tokenizer), so a model retrained into the same path gets a new fingerprint;
  ``default`` resolves to the packaged model's directory first.
- :func:`weights_fingerprint`: of a model in memory, from its config and every tensor's bytes.

A path that is not a local directory (a hub name) is fingerprinted by its name only, and says so.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from .packaged import resolve_model_path

_CHUNK = 1 << 22


def files_fingerprint(path: str) -> str:
    """blake2b over (relative name, bytes) of every file under the model directory ``path``."""
    root = Path(resolve_model_path(path))
    h = hashlib.blake2b(digest_size=16)
    if not root.is_dir():
        h.update(f"name:{path}".encode())  # a hub name: no local content to read
        return h.hexdigest()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(root)).encode() + b"\0")
        with open(f, "rb") as fh:
            while block := fh.read(_CHUNK):
                h.update(block)
    return h.hexdigest()


def weights_fingerprint(model: torch.nn.Module, skip=lambda name: False) -> str:
    """blake2b over the config and the named tensors of ``model`` (names for which ``skip`` is true left out)."""
    h = hashlib.blake2b(digest_size=16)
    config = getattr(model, "config", None)
    if config is not None:
        h.update(json.dumps(config.to_diff_dict(), sort_keys=True, default=str).encode())
    for name, t in sorted(model.state_dict().items()):
        if skip(name):
            continue
        h.update(name.encode())
        h.update(t.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
