"""Reading a judge's reply: the verdict (A, B or tie), where it stands, and the verdict token's probability.

Accepted verdict formats, tried in this order; within a format the last occurrence wins (judges
reason first, then conclude):

1. double brackets, as the template asks: ``[[A]]``, ``[[B]]``, ``[[tie]]``;
2. an explicit verdict line: ``Verdict: B``, ``**Verdict:** B``, ``Final verdict is [B].``,
   ``Verdict: Response A``, ``Verdict: tie`` / ``Verdict: a tie``. The letter must stand alone
   and end the verdict: followed by the end of the line, punctuation, or ``is`` / ``was`` / ``wins``
   — so ``Verdict: A tie`` and ``Verdict: A slight edge to B`` (the article) are no verdict;
3. single brackets: ``[A]``, ``[B]``, ``[tie]``;
4. a reply that is nothing but the verdict: ``A``, ``**B**``, ``tie.`` (re-asks, prefilled replies:
   ``[[`` + ``A]]``).

A and B are upper case everywhere — the article "a" is never a verdict; "tie" is read in any case.
Anything else ("Response A is better", a refusal, "a slight edge to B") is no verdict: the judge
re-asks once for the exact format, then records the item as unparseable.

The soft probability P(A) / (P(A) + P(B)) is read from the top log-probs at the output position of
the parsed verdict token, found by parsing the concatenated sampled tokens the same way. Candidate
tokens count for A or B only when, without surrounding whitespace and brackets, they are exactly
``A`` or ``B`` (case-sensitive): `` a`` is not A. Text after the verdict cannot move the probability.
"""

from __future__ import annotations

import math
import re

from .clients import Reply

_CHOICE = r"(?:(?P<v>A|B)|(?P<t>(?i:tie)))"
_ENDS = r"(?=[*\])]*(?:[ \t]*$|[ \t]*[.,;:!\-—]|\s+(?:is|was|wins)\b))"  # the letter ends the verdict
_PATTERNS = [
    re.compile(r"\[\[\s*" + _CHOICE + r"\s*\]\]"),
    re.compile(r"(?i:\bverdict\b)[\s*:\-]*(?:(?i:is)[\s*:\-]+)?(?:\[\s*)?(?:(?i:response|assistant)\s+)?"
               r"(?:(?P<v>A|B)" + _ENDS + r"|(?:(?i:it'?s|it\s+is)\s+)?(?:(?i:a|an)\s+)?(?P<t>(?i:tie))\b)", re.MULTILINE),
    re.compile(r"(?<!\[)\[\s*" + _CHOICE + r"\s*\](?!\])"),
    re.compile(r"^[\s*\[(]*" + _CHOICE + r"[\s*\]).!]*$"),
]
_STRIP = " \t\r\n[]"


def find_verdict(text: str) -> tuple[str, int] | None:
    """('A' | 'B' | 'tie', character offset of the verdict word in ``text``), or None."""
    for i, pat in enumerate(_PATTERNS):
        found = list(pat.finditer(text or "")) if i < 3 else [m for m in [pat.fullmatch(text or "")] if m]
        if found:
            m = found[-1]
            return ("tie", m.start("t")) if m.group("t") else (m.group("v"), m.start("v"))
    return None


def parse_verdict(text: str) -> str | None:
    """'A', 'B', 'tie' or None: see the module docstring for the accepted formats."""
    found = find_verdict(text)
    return found[0] if found else None


def verdict_position(reply: Reply, prefill: str = "") -> int | None:
    """Index of the output token where the reply's verdict stands, or None when it cannot be located.

    The sampled tokens are joined and parsed like the text (after ``prefill``); the verdict found
    must be the one parsed from the text, and the token covering its first character must itself be
    that verdict (``A``, `` [[B``, ``tie`` or its first piece)."""
    verdict = parse_verdict(prefill + reply.text)
    found = find_verdict(prefill + "".join(reply.tokens)) if reply.tokens else None
    if verdict is None or found is None or found[0] != verdict or found[1] < len(prefill):
        return None
    offset, end = found[1] - len(prefill), 0
    for i, tok in enumerate(reply.tokens):
        end += len(tok)
        if end > offset:
            core = tok.strip(_STRIP)
            ok = core == verdict if verdict != "tie" else bool(core) and "tie".startswith(core.lower())
            return i if ok else None
    return None


def soft_preference(reply: Reply, prefill: str = "") -> tuple[float | None, str | None]:
    """(P(A) / (P(A) + P(B)) at the verdict token, None) or (None, why it cannot be read):
    ``no log-probs``, ``verdict token not located`` or ``no A/B log-probs at the verdict token``."""
    if not any(reply.top_logprobs):
        return None, "no log-probs"
    i = verdict_position(reply, prefill)
    if i is None or i >= len(reply.top_logprobs):
        return None, "verdict token not located"
    tops = reply.top_logprobs[i]
    pa = sum(math.exp(v) for k, v in tops.items() if k.strip(_STRIP) == "A")
    pb = sum(math.exp(v) for k, v in tops.items() if k.strip(_STRIP) == "B")
    if pa + pb <= 0:
        return None, "no A/B log-probs at the verdict token"
    return pa / (pa + pb), None
