"""``shiftalign sample``: n responses per prompt from a policy, streamed to JSONL, resumable.

Batched sampling with the KV cache and left padding; prompts sorted by length so a batch pads
little; temperature / top-p / top-k / max new tokens / seed; stops at EOS. Each row records the
sampling parameters, the response's token ids and its log-prob under the policy itself
(temperature 1, no truncation: log pi(y|x), what density ratios and online RL need), taken from
the logits of the same generation pass. Backends (registered in ``rollout.backends``): ``decode``
(the default; ``rollout.decode``, a plain decode loop on the HF model, faster than ``generate`` on a CPU:
BENCHMARKS.md), ``hf`` (transformers' ``generate``, what the committed shift data was sampled with), ``vllm``.

Rows are appended prompt by prompt (all n samples of a prompt together, flushed and fsynced); a
rerun skips prompts whose n samples are already in the file and drops a half-written last line.
Every row carries ``sample_key``, a fingerprint of what produced it: the policy's files (weights,
config, tokenizer), the sampling parameters, the prompt rendering and the backend. A rerun resumes
only rows of the same key; rows of another key (the model at the path was retrained, the
temperature changed) stop the run with a message, or with ``replace_stale: true`` (what
``evaluate``'s sample cache uses) are discarded and sampled again.
Under ``accelerate launch`` / ``torchrun`` each process samples its share of the prompts into its
own shard file and the main process merges them. With ``backend: vllm`` (when vLLM is installed)
generation runs on one vLLM engine per stage (``rollout.generate.vllm_engine``, released when the stage ends);
the log-prob is vLLM's cumulative raw log-prob of the response, log pi(y|x) at temperature 1. With
``vllm.lora_adapters`` a LoRA policy is served as an adapter request on an engine of its base model, and its rows'
key records the adapter's and the base's files.
With ``kl_to`` (a baseline model; the decode backend) each row also records ``kl``, the KL of the policy's
tempered sampling distribution to the baseline's along the response (``rollout.kl``: what ``evaluate`` reports).

    shiftalign sample configs/sample.yaml policy.path=runs/dpo/model n=8
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..config import ModelConfig
from ..data.load import load_examples
from ..data.text import encode, render_prompt
from ..errors import ConfigError
from ..io import write_text_atomic
from ..log import log
from .backends import SAMPLERS, vllm_adapter
from .params import SamplingParams, VLLMConfig


@dataclass
class SampleConfig:
    prompts: str = ""  # prompt rows (a `prompt` field; ids as in data.load)
    output: str = "runs/samples.jsonl"
    policy: ModelConfig = field(default_factory=ModelConfig)
    sampling: SamplingParams = field(default_factory=SamplingParams)
    batch_size: int = 128  # sequences decoded together (prompts x n); larger batches use the matrix units better
    max_prompt_length: int = 512
    wrap_text_as_chat: bool = False  # plain-text prompts become a user turn of the chat template
    backend: str = "decode"  # a registered sampling backend (rollout.backends): decode | hf | vllm
    vllm: VLLMConfig = field(default_factory=VLLMConfig)  # with backend vllm: the engine's settings
    kl_to: str | None = None  # a baseline model: with a backend that reads_kl, each row also gets `kl` (rollout.kl)
    split: str = "train"
    replace_stale: bool = False  # rows made under another sample_key: false = refuse, true = sample again
    progress: bool = True


def prompt_seed(seed: int, prompt_id: str) -> int:
    """The seed of one prompt's samples: from the sampling seed and the prompt's id alone, so a prompt draws the
    same samples in any batch, and a resumed job (which skips finished prompts) draws what an uninterrupted one
    draws."""
    return random.Random(f"{seed}:{prompt_id}").randrange(2**31)


def sample_key(cfg: SampleConfig) -> str:
    """Fingerprint of everything that determines a sample (but not which prompts are sampled)."""
    import hashlib

    from ..models.fingerprint import files_fingerprint

    adapter = vllm_adapter(cfg)
    parts = {"policy": files_fingerprint(cfg.policy.path), "sampling": asdict(cfg.sampling), "backend": cfg.backend,
             "max_prompt_length": cfg.max_prompt_length, "wrap_text_as_chat": cfg.wrap_text_as_chat,
             "seeding": "per prompt",  # rows drawn with one seed per batch (before) are another key
             **({"vllm_dtype": cfg.vllm.dtype} if cfg.backend == "vllm" else {}),  # the engine's precision
             # a LoRA policy served as base + adapter request: the merged model in exact arithmetic only, and
             # computed from the adapter's and the base's files (rollout.generate)
             **({"vllm_lora": {"adapter": files_fingerprint(adapter.path), "base": files_fingerprint(adapter.base)}}
                if adapter is not None else {}),
             **({"kl_to": files_fingerprint(cfg.kl_to)} if cfg.kl_to else {})}  # rows carry their KL to it
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def finished_prompts(path: Path, n: int, key: str, replace_stale: bool) -> set[str]:
    """Prompt ids with all n samples of this ``key`` in ``path``. A truncated last line is dropped from
    the file; rows of another key stop the run, or with ``replace_stale`` are dropped from it."""
    if not path.exists():
        return set()
    lines, good = path.read_text(encoding="utf-8").splitlines(keepends=True), []
    for ln in lines:
        try:
            good.append(json.loads(ln))
        except json.JSONDecodeError:
            break  # a half-written line from a killed run: everything after it is discarded
    stale = [r for r in good if r.get("sample_key") != key]
    if stale and not replace_stale:
        raise ConfigError(f"{path}: {len(stale)} of its {len(good)} samples were made by another policy or with other "
                          "sampling settings (their sample_key differs); write to another file or delete it")
    keep = [r for r in good if r.get("sample_key") == key]
    if len(keep) != len(lines) or (lines and not lines[-1].endswith("\n")):
        write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in keep))
    counts: dict[str, int] = {}
    for r in keep:
        counts[r["prompt_id"]] = counts.get(r["prompt_id"], 0) + 1
    return {p for p, c in counts.items() if c >= n}


def _append(path: Path, rows: list[dict]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
        f.flush()
        os.fsync(f.fileno())


def main(cfg: SampleConfig) -> Path:
    from ..models.load import load_policy

    if cfg.sampling.n < 1:
        raise ConfigError("sampling.n must be >= 1")
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())  # joins the process group under torchrun / accelerate
    rank, world = state.process_index, state.num_processes
    out = Path(cfg.output)
    shard = out if world == 1 else out.with_name(f"{out.stem}.rank-{rank}{out.suffix}")
    examples = load_examples(cfg.prompts, "prompt", cfg.split)[rank::world]  # validated before anything is written
    sampler = SAMPLERS.get(cfg.backend)
    if cfg.kl_to and not sampler.reads_kl:
        raise ConfigError(f"kl_to: the {cfg.backend} backend does not read the KL during sampling; "
                          f"backends that do: {', '.join(n for n in SAMPLERS.names() if SAMPLERS.get(n).reads_kl)}")
    key = sample_key(cfg)  # before anything is written: it reads (and checks) the policy's files
    shard.parent.mkdir(parents=True, exist_ok=True)
    done = finished_prompts(shard, cfg.sampling.n, key, cfg.replace_stale)
    todo = [e for e in examples if e.id not in done]
    log(f"sample: {len(examples)} prompts ({len(done)} already done) x {cfg.sampling.n} -> {out}")
    model, tok = load_policy(cfg.policy) if sampler.loads_model else (None, None)
    if model is not None:
        model.eval().to(state.device)
    if tok is None:
        from ..models.load import load_tokenizer
        tok = load_tokenizer(cfg.policy.path)
    encoded = [(e, encode(tok, render_prompt(tok, e.prompt, cfg.wrap_text_as_chat))[-cfg.max_prompt_length:]) for e in todo]
    engine = sampler.start(cfg) if sampler.start is not None and encoded else None
    encoded.sort(key=lambda t: len(t[1]))
    per_batch = max(1, cfg.batch_size // cfg.sampling.n)
    params = asdict(cfg.sampling)
    bar = tqdm(total=len(encoded), disable=not (cfg.progress and rank == 0), desc="sample", unit="prompt")
    tokens, t0 = 0, time.perf_counter()
    for s in range(0, len(encoded), per_batch):
        chunk = encoded[s:s + per_batch]
        seed = [prompt_seed(cfg.sampling.seed, ex.id) for ex, _ in chunk]
        ids = [c[1] for c in chunk]
        results = sampler.generate(model, tok, engine, ids, cfg.sampling, seed)
        rows = []
        for (ex, _), samples in zip(chunk, results):
            for k, smp in enumerate(samples):
                tokens += len(smp["completion_ids"])
                rows.append({"id": f"{ex.id}-{k}", "prompt_id": ex.id, "prompt": ex.prompt,
                             "completion": tok.decode(smp["completion_ids"], skip_special_tokens=True),
                             "completion_ids": smp["completion_ids"], "logp": smp["logp"],
                             "n_tokens": len(smp["completion_ids"]), "finished": smp["finished"],
                             **({"kl": smp["kl"], "kl_to": cfg.kl_to} if "kl" in smp else {}),
                             "policy": cfg.policy.path, "sampling": params, "sample_key": key})
        _append(shard, rows)
        bar.update(len(chunk))
        bar.set_postfix(tok_s=f"{tokens / (time.perf_counter() - t0):.0f}")
    bar.close()
    if engine is not None:
        engines = [engine]
        del engine
        sampler.stop(engines.pop())  # the last reference goes with the call: its memory is released now
    if world > 1:
        state.wait_for_everyone()
        if rank == 0:
            parts = [out.with_name(f"{out.stem}.rank-{r}{out.suffix}") for r in range(world)]
            write_text_atomic(out, "".join(p.read_text(encoding="utf-8") for p in parts))
    log(f"samples: {out} ({tokens} new tokens in {time.perf_counter() - t0:.1f}s)")
    return out
