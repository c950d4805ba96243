"""What a pair's weight compares, and the rows it reads.

``pair_mode`` says which text of a source pair is compared with the target's (prompt, response)
rows, and how the two weights of a pair are combined:
- ``prompt``   : the prompt alone (prompt shift; target rows need only ``prompt``);
- ``chosen``   : prompt + chosen response;
- ``rejected`` : prompt + rejected response;
- ``both``     : each response is weighted on its own and the pair gets the geometric mean
  sqrt(w(x, y+) * w(x, y-)), which is the weight of the pair when chosen and rejected were drawn
  independently given the prompt (the product), taken to the power 1/2 to keep a pair's weight
  on the scale of one response's.
"""

from __future__ import annotations

import numpy as np

from ..data.schema import Example
from ..data.text import text_of
from ..errors import ConfigError

MODES = ("prompt", "chosen", "rejected", "both")


def source_texts(examples: list[Example], mode: str) -> list[list[tuple[str, str]]]:
    """For each mode's view, a list of (prompt text, response text); ``both`` gives two lists."""
    if mode not in MODES:
        raise ConfigError(f"pair_mode must be one of {', '.join(MODES)}, got {mode!r}")
    prompts = [text_of(e.prompt) for e in examples]
    if mode == "prompt":
        return [[(p, "") for p in prompts]]
    cols = {"chosen": [0], "rejected": [1], "both": [0, 1]}[mode]
    return [[(p, text_of(e.completions[c])) for p, e in zip(prompts, examples)] for c in cols]


def target_texts(examples: list[Example], mode: str) -> list[tuple[str, str]]:
    if mode == "prompt":
        return [(text_of(e.prompt), "") for e in examples]
    return [(text_of(e.prompt), text_of(e.completions[0])) for e in examples]


def combine(weights: list[np.ndarray]) -> np.ndarray:
    return weights[0] if len(weights) == 1 else np.sqrt(weights[0] * weights[1])
