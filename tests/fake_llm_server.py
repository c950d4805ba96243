"""A loopback HTTP server speaking the OpenAI chat-completions and Anthropic messages wire formats,
with faults injected by markers in the judged prompt. For tests and bench/labeling_throughput.py.

Verdict rule: the response containing "good" wins ([[A]] or [[B]]); both or neither: [[tie]].
``biased=True`` always answers [[A]] (a position-biased judge). Markers in the prompt:
FAULT429 (first request: 429 + retry-after: 1), FAULT500 (first request: 500), SLOW (sleeps
``slow_seconds``), MALFORMED (never a verdict), REASKOK (no verdict first, then a good one),
TRUNC (cut off at max tokens), REFUSE (a refusal).

With ``logprobs`` asked for (and ``no_logprobs`` off), an OpenAI reply carries every output token
(the text split at word boundaries, so the verdict letter is a token of its own) with its top
log-probs: at the verdict token P(verdict) = 0.9; every other token is certain. ``trailing`` is
appended to each verdict reply (e.g. text with the article " a"). ``count_tokens(messages)``, when
given, is the reported input-token count (e.g. a real tokenizer's); by default it is chars // 4.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeLLM:
    def __init__(self, biased: bool = False, latency: float = 0.0, slow_seconds: float = 3.0, trailing: str = "",
                 no_logprobs: bool = False, count_tokens=None):
        self.biased, self.latency, self.slow_seconds = biased, latency, slow_seconds
        self.trailing, self.no_logprobs, self.count_tokens = trailing, no_logprobs, count_tokens
        self.requests = 0
        self.by_status: dict[int, int] = {}
        self.seen: dict[str, int] = {}
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                status, payload, headers, delay = server.respond(self.path, body)
                time.sleep(delay)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def openai_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def verdict(self, user_text: str) -> str:
        if self.biased:
            return "A"
        a = re.search(r"\[Response A\]\n(.*?)\n\n\[Response B\]", user_text, re.DOTALL)
        b = re.search(r"\[Response B\]\n(.*?)\n\n", user_text, re.DOTALL)
        ga = bool(a and "good" in a.group(1))
        gb = bool(b and "good" in b.group(1))
        return "A" if ga and not gb else "B" if gb and not ga else "tie"

    def respond(self, path: str, body: dict):
        anthropic = path.endswith("/messages")
        msgs = [m for m in body.get("messages", []) if m["role"] == "user"]
        first = msgs[0]["content"] if msgs else ""
        reask = len(msgs) > 1
        key = json.dumps(body.get("messages"), sort_keys=True)
        with self.lock:
            self.requests += 1
            n = self.seen[key] = self.seen.get(key, 0) + 1
        delay = self.latency + (self.slow_seconds if "SLOW" in first else 0.0)

        def count(status):
            with self.lock:
                self.by_status[status] = self.by_status.get(status, 0) + 1

        if "FAULT429" in first and n == 1:
            count(429)
            return 429, {"error": {"type": "rate_limit_error", "message": "slow down"}}, {"retry-after": "1"}, delay
        if "FAULT500" in first and n == 1:
            count(500)
            return 500, {"error": {"type": "api_error", "message": "boom"}}, {}, delay
        v = self.verdict(first)
        finish, refusal = "stop", None
        if "MALFORMED" in first or ("REASKOK" in first and not reask):
            text = "Both responses have merits; it is hard to say."
        elif "TRUNC" in first:
            text, finish = "Looking at the two responses, the first one", "length"
        elif "REFUSE" in first:
            text, finish, refusal = "", "refusal", "I can't help with that."
        else:
            text = (f"Reasoning done.\n[[{v}]]" if not reask else f"[[{v}]]") + self.trailing
        count(200)
        if self.count_tokens is not None:
            system = [{"role": "system", "content": body["system"]}] if body.get("system") else []
            n_in = self.count_tokens(system + body.get("messages", []))
        else:
            n_in = len(first) // 4
        if anthropic:
            stop = {"stop": "end_turn", "length": "max_tokens", "refusal": "refusal"}[finish]
            return 200, {"id": "msg_1", "type": "message", "role": "assistant", "model": body.get("model"),
                         "content": [{"type": "text", "text": text}], "stop_reason": stop, "stop_sequence": None,
                         "usage": {"input_tokens": n_in, "output_tokens": len(text) // 4 + 1}}, {}, delay
        logprobs = None
        if body.get("logprobs") and not self.no_logprobs and text:
            p = {"A": 0.9, "B": 0.08, "tie": 0.02} if v == "A" else {"A": 0.08, "B": 0.9, "tie": 0.02} \
                if v == "B" else {"A": 0.05, "B": 0.05, "tie": 0.9}
            content = []
            verdict_at = text.rfind(f"[[{v}]]") + 2 if f"[[{v}]]" in text else -1
            pos = 0
            for tok in _split_tokens(text):
                if pos == verdict_at:
                    tops = [{"token": t, "logprob": math.log(q), "bytes": None} for t, q in p.items()]
                    content.append({"token": tok, "logprob": math.log(p[v]), "bytes": None, "top_logprobs": tops})
                else:
                    content.append({"token": tok, "logprob": 0.0, "bytes": None,
                                    "top_logprobs": [{"token": tok, "logprob": 0.0, "bytes": None}]})
                pos += len(tok)
            logprobs = {"content": content}
        msg = {"role": "assistant", "content": text or None, "refusal": refusal}
        return 200, {"id": "c1", "object": "chat.completion", "created": 0, "model": body.get("model"),
                     "choices": [{"index": 0, "message": msg, "finish_reason": finish, "logprobs": logprobs}],
                     "usage": {"prompt_tokens": n_in, "completion_tokens": len(text) // 4 + 1,
                               "total_tokens": n_in + len(text) // 4 + 1}}, {}, delay


def _split_tokens(text: str) -> list[str]:
    """Word-boundary pieces whose concatenation is ``text``: "Reasoning", " done", ".", "\\n[[", "B", "]]"."""
    return re.findall(r"\s*[A-Za-z0-9']+|\s*[^\sA-Za-z0-9']+|\s+", text)


def serve_asyncio(fake: FakeLLM, port_q, stop_event) -> None:
    """Serve ``fake`` from an asyncio server (one thread, no GIL contention between requests):
    for throughput benchmarks, where a thread per connection would itself be the bottleneck."""
    import asyncio

    async def handle(reader, writer):
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                path = line.split()[1].decode()
                length = 0
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.decode().partition(":")
                    if k.strip().lower() == "content-length":
                        length = int(v.strip())
                body = json.loads(await reader.readexactly(length) or b"{}")
                status, payload, headers, delay = fake.respond(path, body)
                await asyncio.sleep(delay)
                data = json.dumps(payload).encode()
                head = [f"HTTP/1.1 {status} X", "content-type: application/json", f"content-length: {len(data)}"]
                head += [f"{k}: {v}" for k, v in headers.items()]
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port_q.put(server.sockets[0].getsockname()[1])
        while not stop_event.is_set():
            await asyncio.sleep(0.1)
        server.close()

    asyncio.run(main())
