"""Reading policy samples (rows with ``prompt`` and ``completion``; ``id`` / ``prompt_id`` optional)
and grouping them by prompt. An empty response is a real outcome of sampling (the policy stopped at
once): it is set aside with its reason rather than rejected as bad input."""

from __future__ import annotations

import json

from ..data.load import read_rows
from ..data.schema import Example, validate_row
from ..errors import DataError


def grouped_samples(path: str, split: str = "train") -> tuple[list[list[Example]], list[dict]]:
    """(samples grouped by prompt in file order, records of the samples set aside)."""
    rows, unit = read_rows(path, split)
    groups: dict[str, list[Example]] = {}
    empty, seen = [], set()
    for n, row in rows:
        if isinstance(row, dict) and isinstance(row.get("completion"), str) and not row["completion"].strip():
            empty.append({"prompt": row.get("prompt"), "a_id": row.get("id"), "b_id": None, "reason": "empty response"})
            continue
        ex = validate_row(row, "sft", str(path), n, unit)
        if ex.id in seen:
            raise DataError(str(path), n, "id", f"a unique id ('{ex.id}' repeats)", unit=unit)
        seen.add(ex.id)
        groups.setdefault(json.dumps(ex.prompt, sort_keys=True), []).append(ex)
    return list(groups.values()), empty


def response(ex: Example):
    return ex.completions[0]
