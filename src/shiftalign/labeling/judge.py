"""Pairwise LLM judge: both orders, tolerant parsing with one re-ask, explicit unlabelled records.

For a prompt x and two responses (y1, y2) the judge is asked twice, with y1 as A and y2 as B and
the other way round (Zheng et al., 2023, "Judging LLM-as-a-Judge with MT-Bench and Chatbot Arena",
Sec. 3.4: position bias). Each answer is parsed to A, B or tie and mapped back to y1 / y2 / tie:

- both orders prefer the same response -> that response is chosen, confidence 1 (or the soft
  probability from token log-probs when the backend gives them);
- one order prefers, the other says tie -> chosen with confidence 0.75, or a tie if
  ``partial: tie``;
- the orders disagree, or both say tie -> a tie: recorded, never turned into a label.

The accepted verdict formats, and how the verdict token's probability is read at the verdict's own
output position, are in ``labeling.verdict``.

With ``decide: soft`` the label comes instead from the probability of the verdict token averaged
over both orders, P(y1) = (P1(A) + P2(B)) / 2, which cancels a constant position bias (the balanced
position calibration of Wang et al., 2023, "Large Language Models are not Fair Evaluators",
Sec. 3.2); pairs within ``soft_margin`` of 1/2 are ties. ``decide: soft`` is refused with a backend
that gives no log-probs (``anthropic``) or with ``backend.logprobs: false``; a reply that still
lacks a readable verdict-token probability (a server that ignores the request) falls back to the
verdicts, and says so: the pair's ``decision`` is e.g. ``verdicts (no log-probs)`` and the labeller
counts it in ``soft_fallbacks``. ``prefill`` starts the judge's reply with fixed text (e.g. ``[[``)
so that the next token is the verdict: small local judges that do not follow the answer format still
give one.

Cached answers are keyed on the backend kind, the endpoint (``base_url``), the model (and, for a
local model, a fingerprint of its files), whether log-probs were asked for, the template hash (which
covers the prefill), the texts and the sampling parameters — never on the API key.

An answer that cannot be parsed, or that was cut off, gets one re-ask; then the item is recorded as
unlabelled with its reason (unparseable, truncated, refusal, deadline, budget, HTTP errors). A
failed call never becomes a default verdict.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass

from ..errors import ConfigError
from .cache import ResponseCache, cache_key
from .clients import BACKENDS, BackendConfig, CallError, Reply
from .limits import Limiter, input_token_bound
from .verdict import parse_verdict, soft_preference

__all__ = ["JudgeConfig", "Outcome", "PairJudge", "check_config", "parse_verdict", "soft_preference", "template_hash"]

SYSTEM = ("You are an impartial judge. Compare two responses to the user's prompt and decide which one is "
          "better: more helpful, correct, harmless and clear. Ignore the order in which they appear and their length.")
TEMPLATE = ("[Prompt]\n{prompt}\n\n[Response A]\n{a}\n\n[Response B]\n{b}\n\n"
            "Explain briefly, then end with your verdict on its own line: [[A]] if A is better, [[B]] if B is "
            "better, or [[tie]].")
REASK = "Reply with exactly one of [[A]], [[B]] or [[tie]] and nothing else."


@dataclass
class JudgeConfig:
    system: str = SYSTEM
    template: str = TEMPLATE  # with {prompt}, {a}, {b}
    max_tokens: int = 256
    temperature: float = 0.0
    partial: str = "label"  # one order prefers, the other ties: label (confidence 0.75) | tie
    prefill: str = ""  # start of the judge's reply, e.g. "[[" (local and anthropic backends)
    decide: str = "verdicts"  # verdicts (both orders must agree) | soft (order-averaged verdict-token probability:
    #   needs log-probs, so not with the anthropic backend nor backend.logprobs: false)
    soft_margin: float = 0.05  # decide: soft — |P(y1) - 1/2| at or below this is a tie


def template_hash(cfg: JudgeConfig) -> str:
    parts = [cfg.system, cfg.template, REASK] + ([cfg.prefill] if cfg.prefill else [])
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


def check_config(backend: BackendConfig, cfg: JudgeConfig) -> None:
    """Refuse judge settings the backend cannot honour, before anything is built or written."""
    if cfg.decide not in ("verdicts", "soft"):
        raise ConfigError(f"judge.decide must be verdicts or soft, got {cfg.decide!r}")
    cls = BACKENDS.get(backend.kind)
    if cls is None:
        raise ConfigError(f"judge backend kind must be one of {', '.join(BACKENDS)}, got {backend.kind!r}")
    if cfg.prefill and not cls.takes_prefill:
        raise ConfigError(f"judge.prefill needs a backend that continues a started reply (local, anthropic); the "
                          f"{backend.kind} backend cannot: the OpenAI chat API has no assistant prefill")
    if cfg.decide == "soft" and not cls.gives_logprobs:
        raise ConfigError(f"judge.decide: soft needs token log-probs, which the {backend.kind} backend never returns; "
                          "use decide: verdicts, or a backend that gives log-probs (openai-compatible, local)")
    if cfg.decide == "soft" and not backend.logprobs:
        raise ConfigError("judge.decide: soft needs token log-probs, but backend.logprobs is false; set it to true "
                          "or use decide: verdicts")


@dataclass
class Outcome:
    verdict: str | None  # A | B | tie | None
    reason: str | None  # why there is no verdict
    soft_a: float | None = None
    soft_missing: str | None = None  # why soft_a is None: no log-probs | verdict token not located | ...


class PairJudge:
    def __init__(self, backend, backend_cfg: BackendConfig, cfg: JudgeConfig, limiter: Limiter,
                 cache: ResponseCache | None):
        check_config(backend_cfg, cfg)
        self.backend, self.backend_cfg = backend, backend_cfg
        self.cfg, self.limiter, self.cache = cfg, limiter, cache
        self.thash = template_hash(cfg)
        self.requests = 0
        self.soft_fallbacks = 0  # decide: soft, but a pair's replies had no readable verdict-token probability
        self.fatal: str | None = None

    async def _call(self, messages, key: str, deadline: float) -> Reply:
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                return Reply(**hit)
        lim = self.limiter
        est_in = input_token_bound(messages)  # an upper bound: the reservation covers the true input
        attempt = 0
        while True:
            attempt += 1
            if self.fatal:
                raise CallError(self.fatal, retryable=False)
            await lim.rpm.take(1)
            await lim.tpm.take(est_in + self.cfg.max_tokens)
            async with lim.sem:
                if self.fatal:  # set by another request while this one waited
                    raise CallError(self.fatal, retryable=False)
                # Reserved only while in flight: requests still queued hold no share of the budget.
                reserved = lim.budget.reserve(est_in, self.cfg.max_tokens)
                if reserved is None:
                    raise CallError("budget", retryable=False)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    lim.budget.settle(reserved, 0, 0)
                    raise CallError("deadline", retryable=False)
                self.requests += 1
                try:
                    reply = await asyncio.wait_for(self.backend.chat(messages, self.cfg.max_tokens, self.cfg.temperature),
                                                   timeout=remaining)
                except asyncio.TimeoutError:  # abandoned in flight: the server may still process and bill it
                    lim.budget.settle_unknown(reserved, est_in, self.cfg.max_tokens)
                    raise CallError("deadline", retryable=False) from None
                except CallError as e:
                    if e.maybe_billed:
                        lim.budget.settle_unknown(reserved, est_in, self.cfg.max_tokens)
                    else:
                        lim.budget.settle(reserved, 0, 0)
                    if e.fatal:
                        self.fatal = str(e)
                    error = e
                else:
                    lim.budget.settle(reserved, reply.input_tokens, reply.output_tokens)
                    lim.tpm.refund(max(0, est_in + self.cfg.max_tokens - reply.input_tokens - reply.output_tokens))
                    if self.cache is not None:
                        self.cache.put(key, reply.__dict__)
                    return reply
            if not error.retryable or attempt >= lim.cfg.max_attempts:
                raise error
            wait = lim.backoff(attempt, error.retry_after)
            if time.monotonic() + wait >= deadline:
                raise CallError("deadline", retryable=False) from None
            await asyncio.sleep(wait)

    async def ask(self, prompt: str, a: str, b: str, deadline: float) -> Outcome:
        """One order: the verdict on (A, B), with one re-ask when unparseable or cut off."""
        cfg = self.cfg
        messages = [{"role": "system", "content": cfg.system},
                    {"role": "user", "content": cfg.template.format(prompt=prompt, a=a, b=b)}]
        bc = self.backend_cfg
        base = {"backend": bc.kind, "base_url": bc.base_url, "model": bc.model, "logprobs": bc.logprobs,
                "model_fingerprint": getattr(self.backend, "fingerprint", None), "template": self.thash,
                "prompt": prompt, "a": a, "b": b, "max_tokens": cfg.max_tokens, "temperature": cfg.temperature}
        pre = [{"role": "assistant", "content": cfg.prefill}] if cfg.prefill else []
        try:
            reply = await self._call(messages + pre, cache_key(**base, reask=False), deadline)
            if reply.finish_reason == "refusal":
                return Outcome(None, "refusal")
            verdict = parse_verdict(cfg.prefill + reply.text)
            if verdict is None:
                first_problem = "truncated" if reply.finish_reason == "length" else "unparseable"
                messages += [{"role": "assistant", "content": cfg.prefill + reply.text}, {"role": "user", "content": REASK}]
                reply = await self._call(messages + pre, cache_key(**base, reask=True), deadline)
                if reply.finish_reason == "refusal":
                    return Outcome(None, "refusal")
                verdict = parse_verdict(cfg.prefill + reply.text)
                if verdict is None:
                    return Outcome(None, first_problem)
            return Outcome(verdict, None, *soft_preference(reply, cfg.prefill))
        except CallError as e:
            return Outcome(None, str(e))

    async def judge_pair(self, prompt: str, y1: str, y2: str, deadline_s: float) -> dict:
        """Both orders -> {'label': 'first'|'second'|'tie'|None, 'confidence', 'reason', 'verdicts',
        'soft_first', 'decision'}; ``decision`` says how a pair with two verdicts was decided: ``soft``,
        ``verdicts``, or ``verdicts (<why>)`` when ``decide: soft`` had to fall back."""
        deadline = time.monotonic() + deadline_s
        o1, o2 = await asyncio.gather(self.ask(prompt, y1, y2, deadline), self.ask(prompt, y2, y1, deadline))
        verdicts = [o1.verdict, o2.verdict]
        if o1.verdict is None or o2.verdict is None:
            reason = o1.reason or o2.reason
            return {"label": None, "confidence": None, "reason": reason, "verdicts": verdicts, "decision": None}
        vote = {"A": 1, "B": -1, "tie": 0}
        s = vote[o1.verdict] - vote[o2.verdict]  # +: y1 preferred, -: y2 preferred
        soft = None
        if o1.soft_a is not None and o2.soft_a is not None:
            soft = (o1.soft_a + (1 - o2.soft_a)) / 2  # P(y1 better), averaged over both orders
        out = {"verdicts": verdicts, "soft_first": soft, "decision": "verdicts"}
        if self.cfg.decide == "soft":
            if soft is not None:
                out["decision"] = "soft"
                if abs(soft - 0.5) <= self.cfg.soft_margin:
                    return {"label": "tie", "confidence": None, "reason": "soft tie", **out}
                label = "first" if soft > 0.5 else "second"
                return {"label": label, "confidence": max(soft, 1 - soft), "reason": None, **out}
            self.soft_fallbacks += 1  # never silent: recorded on the pair and counted in the summary
            out["decision"] = f"verdicts ({o1.soft_missing or o2.soft_missing})"
        if abs(s) == 2 or (abs(s) == 1 and self.cfg.partial == "label"):
            label = "first" if s > 0 else "second"
            conf = 1.0 if abs(s) == 2 else 0.75
            if soft is not None:
                conf = soft if s > 0 else 1 - soft
            return {"label": label, "confidence": conf, "reason": None, **out}
        why = "position disagreement" if o1.verdict != "tie" and o2.verdict != "tie" else "tie"
        return {"label": "tie", "confidence": None, "reason": why, **out}
