"""Chat backends for the LLM judge: any OpenAI-compatible server (the ``openai`` SDK with a base
URL: OpenAI, vLLM, llama.cpp, Ollama), Anthropic (the ``anthropic`` SDK), and a local Hugging Face
model (default: the packaged SmolLM2-135M-Instruct).

Every backend answers ``await chat(messages, max_tokens, temperature)`` with a :class:`Reply` or
raises :class:`CallError` saying whether the failure is worth retrying and any ``retry-after``.
A reply carries, per output position, the sampled token and (when the backend gives them and
``logprobs`` is on) its top log-probs, so the judge reads the verdict token's probability at the
verdict's own position. Each backend class declares what it can do — ``gives_logprobs``,
``takes_prefill`` — so the judge's configuration is checked before any backend is built.
API keys are read from the environment variable named in the config and kept only inside the SDK
client; they are never part of a config, a log line, a cache key or an output row.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from dataclasses import dataclass, field

from ..errors import ConfigError
from .limits import parse_retry_after


@dataclass
class BackendConfig:
    kind: str = "local"  # openai | anthropic | local
    model: str = "default"  # the API's model name, or a local HF path ("default": packaged SmolLM2)
    base_url: str | None = None  # OpenAI-compatible server, or an Anthropic-compatible endpoint
    api_key_env: str | None = None  # name of the environment variable holding the key
    logprobs: bool = True  # ask for token log-probs (soft labels) where the backend gives them


@dataclass
class Reply:
    text: str
    finish_reason: str  # stop | length | refusal | other
    input_tokens: int = 0
    output_tokens: int = 0
    top_logprobs: list[dict[str, float]] = field(default_factory=list)  # per output token: token -> logprob
    tokens: list[str] = field(default_factory=list)  # per output token: the sampled token's text


class CallError(Exception):
    """A failed request. ``maybe_billed``: the request reached the server and its outcome is unknown (a
    timeout), so it may have been processed and charged; the budget then settles its worst case."""

    def __init__(self, message: str, retryable: bool, retry_after: float | None = None, fatal: bool = False,
                 maybe_billed: bool = False):
        super().__init__(message)
        self.retryable, self.retry_after, self.fatal = retryable, retry_after, fatal
        self.maybe_billed = maybe_billed


def _connection_error(e: Exception, timeout_cls: type) -> CallError:
    """A timeout may have been processed (and billed) by the server; a refused or dropped connection
    before any reply is taken as not."""
    return CallError(f"{type(e).__name__}: {e}", retryable=True, maybe_billed=isinstance(e, timeout_cls))


def _key(cfg: BackendConfig, default_env: str) -> str:
    env = cfg.api_key_env or default_env
    key = os.environ.get(env)
    if not key:
        raise ConfigError(f"the {cfg.kind} judge reads its API key from the environment variable {env}, which is not set")
    return key


def _status_error(status: int, headers, message: str) -> CallError:
    if status in (401, 403):
        return CallError(f"HTTP {status}: authentication refused", retryable=False, fatal=True)
    retryable = status == 429 or status == 408 or status >= 500
    return CallError(f"HTTP {status}: {message[:200]}", retryable, parse_retry_after(headers) if retryable else None)


class OpenAIBackend:
    gives_logprobs = True  # when BackendConfig.logprobs is on and the server implements them
    takes_prefill = False  # the chat-completions API has no assistant prefill

    def __init__(self, cfg: BackendConfig, timeout: float):
        import openai

        self.cfg, self.openai = cfg, openai
        self.client = openai.AsyncOpenAI(api_key=_key(cfg, "OPENAI_API_KEY"), base_url=cfg.base_url,
                                         max_retries=0, timeout=timeout)

    async def chat(self, messages, max_tokens: int, temperature: float) -> Reply:
        o = self.openai
        kw = {"logprobs": True, "top_logprobs": 5} if self.cfg.logprobs else {}
        try:
            # The SDK's generic POST (same auth, base URL, timeouts and typed errors) with a plain
            # body and a plain dict back, skipping the typed request transform and response models: client
            # CPU per request is what limits many requests in flight (BENCHMARKS.md, "Pseudo-labelling").
            body = {"model": self.cfg.model, "messages": messages, "max_tokens": max_tokens,
                    "temperature": temperature, **kw}
            r = await self.client.post("/chat/completions", cast_to=dict, body=body)
        except o.APIStatusError as e:
            raise _status_error(e.status_code, e.response.headers, str(e)) from None
        except (o.APITimeoutError, o.APIConnectionError) as e:
            raise _connection_error(e, o.APITimeoutError) from None
        except (json.JSONDecodeError, ValueError) as e:
            raise CallError(f"malformed response body: {e}", retryable=True) from None
        try:
            choice = r["choices"][0]
            msg = choice["message"]
        except (KeyError, IndexError, TypeError):
            raise CallError("response without choices", retryable=True) from None
        finish = {"stop": "stop", "length": "length", "content_filter": "refusal"}.get(choice.get("finish_reason"), "other")
        if msg.get("refusal"):
            finish = "refusal"
        tops, tokens = [], []
        content_lp = (choice.get("logprobs") or {}).get("content") or []
        try:
            for c in content_lp:
                tops.append({t["token"]: t["logprob"] for t in (c.get("top_logprobs") or [])} | {c["token"]: c["logprob"]})
                tokens.append(c["token"])
        except (KeyError, TypeError):  # malformed log-probs: the verdict stands, without a soft probability
            tops, tokens = [], []
        usage = r.get("usage") or {}
        return Reply(msg.get("content") or "", finish, usage.get("prompt_tokens") or 0,
                     usage.get("completion_tokens") or 0, tops, tokens)


class AnthropicBackend:
    gives_logprobs = False  # the Messages API returns no token log-probs
    takes_prefill = True

    def __init__(self, cfg: BackendConfig, timeout: float):
        import anthropic

        self.cfg, self.anthropic = cfg, anthropic
        self.client = anthropic.AsyncAnthropic(api_key=_key(cfg, "ANTHROPIC_API_KEY"), base_url=cfg.base_url,
                                               max_retries=0, timeout=timeout)
        import inspect

        self.takes_temperature = "temperature" in inspect.signature(self.client.messages.create).parameters

    async def chat(self, messages, max_tokens: int, temperature: float) -> Reply:
        a = self.anthropic
        system = "\n".join(m["content"] for m in messages if m["role"] == "system")
        turns = [m for m in messages if m["role"] != "system"]
        kw = {"system": system} if system else {}
        if self.takes_temperature:  # recent SDKs no longer expose it; the model's default is used then
            kw["temperature"] = temperature
        try:
            r = await self.client.messages.create(model=self.cfg.model, messages=turns, max_tokens=max_tokens, **kw)
        except a.APIStatusError as e:
            raise _status_error(e.status_code, e.response.headers, str(e)) from None
        except (a.APITimeoutError, a.APIConnectionError) as e:
            raise _connection_error(e, a.APITimeoutError) from None
        text = "".join(getattr(b, "text", "") for b in r.content)
        finish = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "refusal": "refusal"}.get(
            r.stop_reason, "other")
        return Reply(text, finish, r.usage.input_tokens, r.usage.output_tokens)


class LocalBackend:
    """A local causal LM as judge: greedy decoding with the chat template; top log-probs per token.
    ``fingerprint`` (of the model's files) enters the judge's cache key: a model retrained into the
    same path is asked again."""

    gives_logprobs = True
    takes_prefill = True

    def __init__(self, cfg: BackendConfig, timeout: float):
        import torch

        from ..config import ModelConfig
        from ..models.fingerprint import files_fingerprint
        from ..models.load import load_policy

        self.torch, self.logprobs = torch, cfg.logprobs
        self.fingerprint = files_fingerprint(cfg.model)
        self.model, self.tok = load_policy(ModelConfig(path=cfg.model))
        self.model.eval()
        self.lock = asyncio.Lock()  # one generate at a time: the model is not re-entrant

    def _generate(self, messages, max_tokens: int) -> Reply:
        torch = self.torch
        prefill = messages[-1]["role"] == "assistant"  # continue a started reply (JudgeConfig.prefill)
        text = self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=not prefill,
                                            continue_final_message=prefill)
        ids = torch.tensor([self.tok(text, add_special_tokens=False)["input_ids"]])
        with torch.inference_mode():
            out = self.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=max_tokens,
                                      eos_token_id=self.tok.eos_token_id, pad_token_id=self.tok.pad_token_id,
                                      return_dict_in_generate=True, output_logits=True)
        new = out.sequences[0, ids.shape[1]:].tolist()
        finished = self.tok.eos_token_id in new
        if finished:
            new = new[: new.index(self.tok.eos_token_id)]
        tops = []
        for step in out.logits[: len(new)] if self.logprobs else []:
            lp = torch.log_softmax(step[0].float(), -1)
            v, i = lp.topk(5)
            tops.append({self.tok.decode([int(t)]): float(x) for t, x in zip(i, v) if math.isfinite(float(x))})
        # Tokens decoded one by one: their concatenation can differ from the decoded reply where a
        # character spans several tokens; the judge locates the verdict within this concatenation.
        tokens = [self.tok.decode([t]) for t in new]
        return Reply(self.tok.decode(new, skip_special_tokens=True), "stop" if finished else "length",
                     ids.shape[1], len(new), tops, tokens)

    async def chat(self, messages, max_tokens: int, temperature: float) -> Reply:
        async with self.lock:
            return await asyncio.to_thread(self._generate, messages, max_tokens)


BACKENDS = {"openai": OpenAIBackend, "anthropic": AnthropicBackend, "local": LocalBackend}


def make_backend(cfg: BackendConfig, timeout: float):
    if cfg.kind not in BACKENDS:
        raise ConfigError(f"judge backend kind must be one of {', '.join(BACKENDS)}, got {cfg.kind!r}")
    return BACKENDS[cfg.kind](cfg, timeout)
