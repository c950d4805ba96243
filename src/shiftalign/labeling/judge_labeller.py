"""LLM-judge labeller: pairwise verdicts in both orders on pairs of policy samples, with the client
discipline of ``labeling.limits`` and the persistent cache of ``labeling.cache``.

The judge settings are checked against the backend when the config is built (``judge.check_config``),
so a refused combination stops before the output directory is claimed. Each labelled pair's
provenance, and each unlabelled record, carries how it was decided (``decision``); the stats count
``soft_fallbacks``, the pairs that ``decide: soft`` had to decide from the verdicts."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from ..data.text import text_of
from .cache import ResponseCache
from .clients import BackendConfig, make_backend
from .judge import JudgeConfig, PairJudge, check_config, template_hash
from .limits import Limiter, LimitsConfig
from .pairs import candidate_pairs
from .samples import response


@dataclass
class JudgeLabelConfig:
    backend: BackendConfig = field(default_factory=BackendConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    pairs: str = "random"  # random | all
    cache: str | None = None  # SQLite file; default: <output_dir>/judge_cache.sqlite

    def __post_init__(self):
        check_config(self.backend, self.judge)


async def _label_async(groups, cfg: JudgeLabelConfig, seed: int, cache: ResponseCache, backend, progress: bool):
    limiter = Limiter(cfg.limits)
    judge = PairJudge(backend, cfg.backend, cfg.judge, limiter, cache)
    rng = random.Random(seed)
    jobs = []
    for g in groups:
        for i, j in candidate_pairs(len(g), cfg.pairs, rng):
            jobs.append((g[i], g[j]))
    bar = tqdm(total=len(jobs), desc="label", unit="pair", disable=not progress)

    async def one(a, b):
        base = {"prompt": a.prompt, "a_id": a.id, "b_id": b.id}
        if response(a) == response(b):
            res = {"label": "tie", "reason": "identical responses", "verdicts": []}
        elif limiter.budget.exhausted:
            res = {"label": None, "reason": "budget", "verdicts": []}
        else:
            res = await judge.judge_pair(text_of(a.prompt), text_of(response(a)), text_of(response(b)),
                                         cfg.limits.deadline)
        bar.update(1)
        return base, a, b, res

    results = await asyncio.gather(*(one(a, b) for a, b in jobs))
    bar.close()
    pairs, dropped = [], []
    for base, a, b, res in results:
        if res["label"] in ("first", "second"):
            c, r = (a, b) if res["label"] == "first" else (b, a)
            pairs.append({"id": f"{c.id}>{r.id}", "prompt": c.prompt, "chosen": response(c), "rejected": response(r),
                          "chosen_id": c.id, "rejected_id": r.id,
                          "provenance": {"labeller": "judge", "backend": cfg.backend.kind, "model": cfg.backend.model,
                                         "template_hash": template_hash(cfg.judge), "verdicts": res["verdicts"],
                                         "soft_first": res.get("soft_first"), "confidence": res["confidence"],
                                         "decision": res["decision"]}})
        else:
            dropped.append({**base, "reason": res["reason"], "label": res["label"], "verdicts": res["verdicts"],
                            "soft_first": res.get("soft_first"), "decision": res.get("decision")})
    b = limiter.budget
    stats = {"requests": judge.requests, "cache_hits": cache.hits, "input_tokens": b.input_tokens,
             "output_tokens": b.output_tokens, "cost_usd": b.spent, "budget_exhausted": b.exhausted,
             "unknown_outcome_requests": b.unknown_requests,
             "soft_fallbacks": judge.soft_fallbacks, "fatal_error": judge.fatal}
    return pairs, dropped, stats


def label(groups, cfg: JudgeLabelConfig, seed: int, out_dir: Path, progress: bool = True, backend=None):
    check_config(cfg.backend, cfg.judge)  # again: the config may have been changed after it was built
    cache = ResponseCache(cfg.cache or out_dir / "judge_cache.sqlite")
    try:
        backend = backend or make_backend(cfg.backend, cfg.limits.request_timeout)
        return asyncio.run(_label_async(groups, cfg, seed, cache, backend, progress))
    finally:
        cache.close()
