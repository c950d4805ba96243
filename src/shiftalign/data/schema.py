"""Row schemas (TRL-compatible) and their validation.

Kinds of row:
- ``paired``   : ``prompt``, ``chosen``, ``rejected``            (DPO family, reward models)
- ``unpaired`` : ``prompt``, ``completion``, ``label`` (bool)     (KTO)
- ``sft``      : ``prompt``, ``completion``  or  ``messages``     (supervised fine-tuning)
- ``prompt``   : ``prompt``                                       (sampling)

Text fields are plain strings or conversational lists of ``{"role", "content"}``. Every row may
carry ``id`` (string or integer; when absent a content hash, stable across runs) and ``weight``
(finite, >= 0). A bad row raises :class:`DataError` naming the source, line, field and expectation.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field

from ..errors import DataError

ROLES = ("system", "user", "assistant", "tool")
KINDS = ("paired", "unpaired", "sft", "prompt", "sample")  # sample: a policy's (prompt, completion), may be empty


@dataclass
class Example:
    """One validated row. ``completions`` holds [chosen, rejected] for paired rows, [completion] otherwise."""

    id: str
    prompt: str | list[dict]
    completions: list[str | list[dict]] = field(default_factory=list)
    label: bool | None = None
    weight: float | None = None
    line: int = 0

    @property
    def conversational(self) -> bool:
        return isinstance(self.prompt, list)


def content_id(prompt, completions, label) -> str:
    blob = json.dumps([prompt, completions, label], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def _text(value, err, name: str, roles=ROLES):
    """Check a text field: a non-empty string or a non-empty list of messages."""
    if isinstance(value, str):
        if not value.strip():
            raise err(name, "a non-empty string (got an empty one)")
        return value
    if isinstance(value, list) and value:
        for i, m in enumerate(value):
            where = f"{name}[{i}]"
            if not isinstance(m, dict) or set(m) - {"role", "content", "name"} or "role" not in m or "content" not in m:
                raise err(where, "a message object with 'role' and 'content'")
            if m["role"] not in roles:
                raise err(f"{where}.role", f"one of {', '.join(roles)} (got {m['role']!r})")
            if not isinstance(m["content"], str) or not m["content"].strip():
                raise err(f"{where}.content", "a non-empty string")
        return value
    raise err(name, f"a non-empty string or a list of {{role, content}} messages (got {type(value).__name__})")


def validate_row(row, kind: str, source: str, line: int, unit: str = "line") -> Example:
    """Validate one raw row of the given kind and return an :class:`Example`."""

    def err(name, expected):
        return DataError(source, line, name, expected, unit=unit)

    if not isinstance(row, dict):
        raise DataError(source, line, None, f"a JSON object (got {type(row).__name__})", unit=unit)

    def need(name):
        if name not in row or row[name] is None:
            raise err(name, "this field is required for a " + kind + " row")
        return row[name]

    label = None
    if kind == "sft" and "messages" in row:
        msgs = _text(row["messages"], err, "messages")
        if not isinstance(msgs, list) or len(msgs) < 2 or msgs[-1]["role"] != "assistant":
            raise err("messages", "a conversation of at least two messages ending with an assistant turn")
        prompt, completions = msgs[:-1], [msgs[-1:]]
    else:
        prompt = _text(need("prompt"), err, "prompt")
        if kind == "paired":
            chosen = _text(need("chosen"), err, "chosen", ("assistant",))
            rejected = _text(need("rejected"), err, "rejected", ("assistant",))
            if chosen == rejected:
                raise err("rejected", "a response different from 'chosen' (they are identical)")
            completions = [chosen, rejected]
        elif kind == "sample" and row.get("completion") == "":  # a policy may answer with eos at once
            completions = [[] if isinstance(prompt, list) else ""]
        elif kind in ("unpaired", "sft", "sample"):
            completions = [_text(need("completion"), err, "completion", ("assistant",))]
            if kind == "unpaired":
                label = need("label")
                if not isinstance(label, bool):
                    raise err("label", f"a boolean true/false (got {label!r})")
        elif kind == "prompt":
            completions = []
        else:
            raise ValueError(f"unknown row kind {kind!r}; known: {KINDS}")
        for c in completions:
            if isinstance(c, list) != isinstance(prompt, list):
                raise err("prompt", "the same format (text or conversational) as the responses")

    weight = row.get("weight")
    if weight is not None:
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise err("weight", f"a number (got {weight!r})")
        if not math.isfinite(weight) or weight < 0:
            raise err("weight", f"a finite number >= 0 (got {weight!r})")
        weight = float(weight)

    rid = row.get("id")
    if rid is None:
        rid = content_id(prompt, completions, label)
    elif isinstance(rid, bool) or not isinstance(rid, (str, int)) or (isinstance(rid, str) and not rid):
        raise err("id", f"a non-empty string or an integer (got {rid!r})")
    return Example(id=str(rid), prompt=prompt, completions=completions, label=label, weight=weight, line=line)
