"""Reading policy samples (rows with ``prompt`` and ``completion``; ``id`` / ``prompt_id`` optional)
and grouping them by prompt."""

from __future__ import annotations

import json

from ..data.load import load_examples
from ..data.schema import Example


def grouped_samples(path: str, split: str = "train") -> list[list[Example]]:
    """Samples grouped by prompt, in file order."""
    groups: dict[str, list[Example]] = {}
    for ex in load_examples(path, "sft", split):
        groups.setdefault(json.dumps(ex.prompt, sort_keys=True), []).append(ex)
    return list(groups.values())


def response(ex: Example):
    return ex.completions[0]
