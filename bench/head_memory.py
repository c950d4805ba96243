"""Peak memory of one shiftalign DPO step with the chunked LM head (``ops.chunked``) against the
full-vocabulary path (the (N, V) logits and their log-softmax held for backward), same model, data
and step: the packaged SmolLM2-135M-Instruct in fp32, 8 pairs of the throughput benchmark's data.

Each path runs in a fresh process (peak RSS is per process): load, reference log-probs, one warm-up
step, one measured step. Reported: the peak RSS, and its rise over the RSS before the first step (the
model and the reference pass; the optimiser state comes with the first step). The difference between
the two paths is the head's. Memory does not depend on what else runs on the machine; the step time
printed beside it does.

Then the head alone, where its share shows: log-probs of N response positions (hidden size and
vocabulary of the 135M model, fp32) forward and backward, peak RSS rise per path and N.

    python bench/head_memory.py          # writes bench/results/head_memory.json
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def measure(path: str) -> dict:
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from dpo_profile import dpo_trainer

    import shiftalign.ops.logprobs as logprobs

    if path == "full":  # no plain head: response_token_logps takes the full-logits path
        logprobs._plain_head = lambda hf: None
    trainer = dpo_trainer("head-memory-")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    torch.manual_seed(0)
    first = trainer.train_step(list(range(8)))
    t = time.perf_counter()
    second = trainer.train_step(list(range(8, 16)))
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"path": path, "peak_rss_gb": peak, "rss_before_steps_gb": before, "rise_gb": peak - before,
            "step_seconds": seconds, "loss": [float(first["loss"]), float(second["loss"])]}


def measure_head(path: str, n: int, hidden: int = 576, vocab: int = 49152) -> dict:
    import torch

    from shiftalign.ops.chunked import chunked_token_logps

    g = torch.Generator().manual_seed(0)
    h = torch.randn(n, hidden, generator=g).requires_grad_()
    W = (0.02 * torch.randn(vocab, hidden, generator=g)).requires_grad_()
    y = torch.randint(0, vocab, (n,), generator=g)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    if path == "chunked":
        logp, _ = chunked_token_logps(h, W, y, 1.0)
    else:
        logp = torch.log_softmax(h @ W.T, -1).gather(-1, y[:, None])[:, 0]
    logp.sum().backward()
    rise = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20 - before
    return {"path": path, "positions": n, "rise_gb": rise, "logits_gb": n * vocab * 4 / 2**30}


def _child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True)
    row = json.loads(out.stdout.strip().splitlines()[-1])
    print(row)
    return row


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(measure(sys.argv[2])))
        return
    if len(sys.argv) == 4 and sys.argv[1] == "--head":
        print(json.dumps(measure_head(sys.argv[2], int(sys.argv[3]))))
        return
    chunked, full = rows = [_child("--one", path) for path in ("chunked", "full")]
    head = [_child("--head", path, str(n)) for n in (1024, 4096, 16384) for path in ("chunked", "full")]
    summary = {"rows": rows, "peak_saved_gb": full["peak_rss_gb"] - chunked["peak_rss_gb"],
               "peak_ratio": chunked["peak_rss_gb"] / full["peak_rss_gb"], "head_only": head}
    out = Path("bench/results/head_memory.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k not in ("rows", "head_only")}))


if __name__ == "__main__":
    main()
