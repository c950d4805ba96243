"""Tokenisation of examples and the truncation rule.

Prompts are rendered by :mod:`.text` (chat template, or plain text as it is).
A response is its text followed by one EOS token; nothing else is added (TRL's DPO convention).

Truncation rule (``truncation: truncate``), applied per sequence (prompt + one response):
1. a prompt longer than ``max_prompt_length`` first loses whole earlier turns, keeping any system
   message and the last user turn; if still too long it keeps its last ``max_prompt_length`` tokens;
2. each response keeps its first ``max_length - len(prompt)`` tokens.
With ``truncation: skip`` an over-long example is dropped instead. Both are counted and reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .schema import Example
from .text import encode, render_prompt, text_of


@dataclass
class Tokenized:
    """Token ids of one example: a shared prompt and one or more responses (branches)."""

    index: int
    id: str
    prompt_ids: list[int]
    completion_ids: list[list[int]]
    weight: float = 1.0
    label: bool | None = None

    @property
    def row_length(self) -> int:
        return len(self.prompt_ids) + sum(len(c) for c in self.completion_ids)


@dataclass
class TruncationReport:
    truncated_prompts: int = 0
    truncated_responses: int = 0
    skipped: int = 0
    skipped_ids: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.truncated_prompts} prompts and {self.truncated_responses} responses truncated, "
                f"{self.skipped} examples skipped as over-long")


def _shorten_prompt(tokenizer, prompt, wrap: bool, limit: int) -> list[int]:
    """Drop earlier turns (keep system + last user turn onwards), then keep the last `limit` tokens."""
    ids = encode(tokenizer, render_prompt(tokenizer, prompt, wrap))
    if len(ids) > limit and isinstance(prompt, list):
        system = [m for m in prompt[:1] if m["role"] == "system"]
        last_user = max((i for i, m in enumerate(prompt) if m["role"] == "user"), default=len(prompt) - 1)
        ids = encode(tokenizer, render_prompt(tokenizer, system + prompt[last_user:], wrap))
    return ids[-limit:]


def tokenize_examples(examples: list[Example], tokenizer, max_length: int, max_prompt_length: int,
                      truncation: str = "truncate", wrap_text_as_chat: bool = False,
                      ) -> tuple[list[Tokenized], TruncationReport]:
    if max_prompt_length >= max_length:
        raise ValueError("max_prompt_length must be smaller than max_length")
    eos = tokenizer.eos_token_id
    report, out = TruncationReport(), []
    for i, ex in enumerate(examples):
        prompt_ids = encode(tokenizer, render_prompt(tokenizer, ex.prompt, wrap_text_as_chat))
        completions = [encode(tokenizer, text_of(c)) + [eos] for c in ex.completions]
        too_long = len(prompt_ids) > max_prompt_length or any(len(prompt_ids) + len(c) > max_length for c in completions)
        if too_long and truncation == "skip":
            report.skipped += 1
            report.skipped_ids.append(ex.id)
            continue
        if too_long:
            if len(prompt_ids) > max_prompt_length:
                prompt_ids = _shorten_prompt(tokenizer, ex.prompt, wrap_text_as_chat, max_prompt_length)
                report.truncated_prompts += 1
            budget = max_length - len(prompt_ids)
            report.truncated_responses += sum(len(c) > budget for c in completions)
            completions = [c[:budget] for c in completions]
        weight = 1.0 if ex.weight is None else ex.weight
        out.append(Tokenized(i, ex.id, prompt_ids, completions, weight, ex.label))
    return out, report


def add_mismatched_branch(items: list[Tokenized], max_length: int, seed: int = 0) -> list[int]:
    """Append to each example the response of an example with another prompt, cut to fit
    ``max_length``: the mismatched pairs (x_i, y_j) from which KTO estimates its KL reference point
    (Ethayarajh et al., 2024, "KTO: Model Alignment as Prospect Theoretic Optimization", Eq. 8).

    The pairing is one seeded shuffle over the data set, drawn once so that the reference model's
    log-probs of the mismatched pairs can be cached: prompts (by token ids) are put in a random
    order, each prompt's rows together, and row j takes the response of row j + m of that order,
    with m the largest number of rows sharing one prompt, so no row is paired with a response to
    its own prompt. That needs m <= n / 2. Returns, for each row, the row its response came from."""
    import random

    groups: dict[tuple[int, ...], list[int]] = {}
    for j, it in enumerate(items):
        groups.setdefault(tuple(it.prompt_ids), []).append(j)
    blocks = list(groups.values())
    rng = random.Random(f"{seed}:mismatched")
    rng.shuffle(blocks)
    for b in blocks:
        rng.shuffle(b)
    order = [j for b in blocks for j in b]
    n, m = len(order), max(map(len, blocks))
    if 2 * m > n:
        raise ValueError(f"KTO's mismatched pairs need responses to other prompts: {m} of the {n} rows share "
                         "one prompt (at most half may)")
    firsts = [it.completion_ids[0] for it in items]
    partner = [0] * n
    for pos, j in enumerate(order):
        it, partner[j] = items[j], order[(pos + m) % n]
        it.completion_ids = [it.completion_ids[0], firsts[partner[j]][: max_length - len(it.prompt_ids)]]
    return partner
