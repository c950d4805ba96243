"""LLM-judge labelling throughput against a loopback OpenAI-compatible server with fixed latency.

Each item (a pair) costs two requests (both orders). With C requests in flight and a latency of
L seconds per request, the bound is C / (2 L) items per second; the benchmark reports the measured
items/s as a fraction of that bound for several concurrency levels. The server runs in its own
process and its latency is a sleep, so the measurement is of the client side: limiter, SDK,
parsing, cache writes.

    python bench/labeling_throughput.py          # writes bench/results/labeling_throughput.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from shiftalign.config import from_dict
from shiftalign.recipes.label import LabelConfig
from shiftalign.recipes.label import main as label_main

from fake_llm_server import FakeLLM, serve_asyncio


def _serve(latency: float, port_q, stop) -> None:
    serve_asyncio(FakeLLM(latency=latency), port_q, stop)


class ServerProcess:
    """FakeLLM on an asyncio server in a separate process: it does not share the client's interpreter,
    and it answers many requests at once without a thread per connection."""

    def __init__(self, latency: float):
        self.q, self.stop = mp.Queue(), mp.Event()
        self.p = mp.Process(target=_serve, args=(latency, self.q, self.stop), daemon=True)

    def __enter__(self):
        self.p.start()
        self.openai_url = f"http://127.0.0.1:{self.q.get(timeout=30)}/v1"
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.p.join(timeout=10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--items", type=int, default=200)
    ap.add_argument("--concurrency", default="1,4,16,32")
    ap.add_argument("--out", default="bench/results/labeling_throughput.json")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-label-"))
    samples = work / "s.jsonl"
    rows = []
    for i in range(a.items):
        rows += [{"id": f"{i}-0", "prompt": f"question {i}", "completion": f"a good answer {i}"},
                 {"id": f"{i}-1", "prompt": f"question {i}", "completion": f"a rude reply {i}"}]
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.environ["BENCH_JUDGE_KEY"] = "local"
    results = []
    for c in [int(x) for x in a.concurrency.split(",")]:
        items = a.items if c > 2 else max(10, a.items // 10)  # keep the slow levels short
        part = work / f"s{c}.jsonl"
        part.write_text("".join(json.dumps(r) + "\n" for r in rows[: 2 * items]))
        with ServerProcess(a.latency) as server:
            cfg = from_dict(LabelConfig, {
                "samples": str(part), "output_dir": str(work / f"out{c}"), "labeller": "judge", "progress": False,
                "judge": {"backend": {"kind": "openai", "model": "m", "base_url": server.openai_url,
                                      "api_key_env": "BENCH_JUDGE_KEY", "logprobs": False},
                          "limits": {"concurrency": c, "deadline": 600}, "cache": str(work / f"cache{c}.sqlite")}})
            t0 = time.perf_counter()
            summary = label_main(cfg)
            dt = time.perf_counter() - t0
        bound = c / (2 * a.latency)
        r = {"concurrency": c, "items": items, "seconds": dt, "items_per_s": items / dt, "bound_items_per_s": bound,
             "fraction_of_bound": items / dt / bound, "labelled": summary["pairs"], "requests": summary["requests"]}
        results.append(r)
        print(f"concurrency {c:3d}: {r['items_per_s']:7.2f} items/s of a bound {bound:6.1f} "
              f"({100 * r['fraction_of_bound']:.1f} %), {summary['pairs']}/{items} labelled", flush=True)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"latency": a.latency, "results": results}, indent=2))


if __name__ == "__main__":
    main()
