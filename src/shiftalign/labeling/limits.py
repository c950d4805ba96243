"""Client discipline for API labellers: concurrency, requests/tokens per minute, retries with
back-off that honour ``retry-after``, a per-item deadline and a hard budget.

The budget reserves each request's worst case before sending it: ``max_tokens`` of output and
:func:`input_token_bound` of input — the UTF-8 byte count of the messages plus a per-message
allowance for the chat template, an upper bound for byte-level BPE tokenizers (GPT-2, tiktoken,
Llama 3, SmolLM2) and SentencePiece with byte fallback, since none of them emits more tokens than
bytes. A character count would undershoot on non-ASCII text (one CJK character is three bytes and
up to three tokens) and let spend pass the cap.

A request that times out in flight may still be processed and billed by the server: it is settled
at its reserved worst case, never at zero, and counted in the summary's ``unknown_outcome_requests``.

The SDK clients are built with ``max_retries=0`` so that retries happen here only, once, with the
server's ``retry-after`` when it sends one (exponential back-off with jitter otherwise).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass


@dataclass
class LimitsConfig:
    concurrency: int = 8  # requests in flight at once
    requests_per_minute: float = 0.0  # 0: no limit
    tokens_per_minute: float = 0.0  # 0: no limit (input + output, estimated before, corrected after)
    max_attempts: int = 4  # per request, the first one included
    backoff_base: float = 1.0  # seconds; doubled each retry, with jitter
    backoff_max: float = 60.0
    deadline: float = 120.0  # seconds per item (both orders and any re-ask): then it is unlabelled
    request_timeout: float = 60.0  # one HTTP request
    budget_usd: float | None = None  # hard cap on estimated spend; None: no cap
    input_usd_per_mtok: float = 0.0  # prices for the cost accounting
    output_usd_per_mtok: float = 0.0


PER_MESSAGE_TOKENS = 8  # role markers and separators of a chat template, per message
PER_REQUEST_TOKENS = 16  # BOS, the generation prompt


def input_token_bound(messages) -> int:
    """An upper bound on the input tokens of ``messages`` for byte-level tokenizers."""
    return sum(len(m["content"].encode("utf-8")) + PER_MESSAGE_TOKENS for m in messages) + PER_REQUEST_TOKENS


class TokenBucket:
    """Continuous-refill bucket: ``capacity`` per minute; ``take(n)`` waits until n are available."""

    def __init__(self, per_minute: float):
        self.rate = per_minute / 60.0
        self.capacity = per_minute
        self.level = per_minute
        self.t = time.monotonic()
        self.lock = asyncio.Lock()

    async def take(self, n: float) -> None:
        if self.rate <= 0:
            return
        n = min(n, self.capacity)
        async with self.lock:
            while True:
                now = time.monotonic()
                self.level = min(self.capacity, self.level + (now - self.t) * self.rate)
                self.t = now
                if self.level >= n:
                    self.level -= n
                    return
                await asyncio.sleep((n - self.level) / self.rate)

    def refund(self, n: float) -> None:
        if self.rate > 0:
            self.level = min(self.capacity, self.level + n)


class Budget:
    """Token and cost accounting with a hard cap: ``reserve`` refuses once the cap would be passed."""

    def __init__(self, cfg: LimitsConfig):
        self.cfg = cfg
        self.input_tokens = 0
        self.output_tokens = 0
        self.reserved = 0.0
        self.exhausted = False
        self.unknown_requests = 0  # timed out in flight: counted at their worst case

    def cost(self, input_tokens: float, output_tokens: float) -> float:
        return (input_tokens * self.cfg.input_usd_per_mtok + output_tokens * self.cfg.output_usd_per_mtok) / 1e6

    @property
    def spent(self) -> float:
        return self.cost(self.input_tokens, self.output_tokens)

    def reserve(self, est_input: int, max_output: int) -> float | None:
        """Reserve the worst-case cost of a request; None when it would pass the cap."""
        c = self.cost(est_input, max_output)
        if self.cfg.budget_usd is not None and self.spent + self.reserved + c > self.cfg.budget_usd:
            self.exhausted = True
            return None
        self.reserved += c
        return c

    def settle(self, reserved: float, input_tokens: int, output_tokens: int) -> None:
        self.reserved -= reserved
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens

    def settle_unknown(self, reserved: float, est_input: int, max_output: int) -> None:
        """A request whose outcome is unknown (timed out in flight) is counted at its worst case: the
        server may have processed and charged it, and the cap must hold whatever it did."""
        self.unknown_requests += 1
        self.settle(reserved, est_input, max_output)


class Limiter:
    def __init__(self, cfg: LimitsConfig):
        self.cfg = cfg
        self.sem = asyncio.Semaphore(cfg.concurrency)
        self.rpm = TokenBucket(cfg.requests_per_minute)
        self.tpm = TokenBucket(cfg.tokens_per_minute)
        self.budget = Budget(cfg)

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.cfg.backoff_max)
        d = min(self.cfg.backoff_max, self.cfg.backoff_base * 2 ** (attempt - 1))
        return d * (0.5 + random.random() / 2)


def parse_retry_after(headers) -> float | None:
    """Seconds from a ``retry-after`` (or ``retry-after-ms``) header, if present and numeric."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    v = headers.get("retry-after")
    if v is None:
        return None
    try:
        return max(0.0, float(v))
    except ValueError:
        return None
