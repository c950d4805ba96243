"""``shiftalign evaluate CONFIG``: compare policies on held-out target prompts with a gold scorer.

For every policy: sample ``n`` responses per prompt (``rollout.sample``, cached and resumable),
score them with the gold scorer (``rl.scorers``; default VADER sentiment), and report
- gold reward: mean, with a paired-bootstrap 95 % interval of its difference to a comparison
  policy (prompts resampled with replacement; Efron & Tibshirani, 1993, Ch. 16);
- win rate against the baseline policy: per prompt, P(gold(policy) > gold(baseline)), ties 1/2;
- KL to the baseline: the mean over the policy's own samples of log pi(y|x) - log pi_base(y|x)
  (sequence-level k1 estimate of KL(pi || pi_base));
- with ``reward_model`` set: that model's accuracy against the gold preference on on-policy pairs
  (two samples of the same prompt whose gold scores differ).
Writes ``evaluation.json`` atomically; samples and the per-policy model metrics are cached, so a rerun
with one more policy computes only that policy.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import ModelConfig
from ..data.batching import collate
from ..data.tokenize import Tokenized, _encode, _render_prompt
from ..errors import ConfigError
from ..io import write_json_atomic
from ..models.load import load_policy
from ..ops.logprobs import branch_logps
from ..rl.scorers import make_scorer
from ..rollout.sample import SampleConfig, SamplingParams
from ..rollout.sample import main as sample_main


@dataclass
class EvaluateConfig:
    prompts: str = ""  # held-out target prompts
    policies: dict = field(default_factory=dict)  # name -> model path
    baseline: str = ""  # policy name for win rate and KL (usually the initial policy)
    compare_to: str | None = None  # policy name for the bootstrap difference; default: the baseline
    gold: dict = field(default_factory=lambda: {"name": "vader"})
    reward_model: str | None = None
    sampling: SamplingParams = field(default_factory=lambda: SamplingParams(n=2, max_new_tokens=64, temperature=0.7))
    wrap_text_as_chat: bool = False
    output_dir: str = "runs/evaluate"
    bootstrap: int = 2000
    seed: int = 0
    progress: bool = True


def paired_bootstrap(a: np.ndarray, b: np.ndarray, n: int, seed: int) -> tuple[float, float, float]:
    """Mean of a - b over prompts and its percentile 95 % interval."""
    d = a - b
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(n, len(d)))].mean(1)
    return float(d.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


@torch.inference_mode()
def sequence_logps(model_path: str, rows: list[dict], wrap: bool) -> np.ndarray:
    model, tok = load_policy(ModelConfig(path=model_path))
    model.eval()
    items = [Tokenized(i, r["id"], _encode(tok, _render_prompt(tok, r["prompt"], wrap)), [r["completion_ids"]])
             for i, r in enumerate(rows)]
    out = np.zeros(len(items))
    for s in range(0, len(items), 16):
        lp = branch_logps(model, collate(items[s:s + 16], tok.pad_token_id))["logps"][:, 0]
        out[s:s + 16] = lp.numpy()
    return out


def main(cfg: EvaluateConfig, log=print) -> dict:
    if cfg.baseline not in cfg.policies:
        raise ConfigError(f"baseline '{cfg.baseline}' is not one of the policies: {', '.join(cfg.policies)}")
    out = Path(cfg.output_dir)
    gold = make_scorer(cfg.gold)
    samples, scores = {}, {}
    for name, path in cfg.policies.items():
        sc = SampleConfig(prompts=cfg.prompts, output=str(out / "samples" / f"{name}.jsonl"),
                          policy=ModelConfig(path=path), sampling=cfg.sampling, wrap_text_as_chat=cfg.wrap_text_as_chat,
                          progress=cfg.progress)
        sample_main(sc, log)
        rows = [json.loads(l) for l in Path(sc.output).read_text().splitlines()]
        rows.sort(key=lambda r: (r["prompt_id"], r["id"]))
        samples[name] = rows
        scores[name] = np.array(gold([r["prompt"] for r in rows], [r["completion"] for r in rows]), dtype=float)
    prompt_ids = sorted({r["prompt_id"] for r in samples[cfg.baseline]})

    def per_prompt(name):
        by = {}
        for r, s in zip(samples[name], scores[name]):
            by.setdefault(r["prompt_id"], []).append(s)
        return np.array([np.mean(by[p]) for p in prompt_ids]), by

    base_mean, base_by = per_prompt(cfg.baseline)
    comp = cfg.compare_to or cfg.baseline
    comp_mean, _ = per_prompt(comp)
    result = {"prompts": len(prompt_ids), "samples_per_prompt": cfg.sampling.n, "gold": cfg.gold, "policies": {}}
    for name, path in cfg.policies.items():
        mean, by = per_prompt(name)
        wins = [np.mean([(x > y) + 0.5 * (x == y) for x in by[p] for y in base_by[p]]) for p in prompt_ids]
        d, lo, hi = paired_bootstrap(mean, comp_mean, cfg.bootstrap, cfg.seed)
        entry = {"model": path, "gold_mean": float(mean.mean()), "gold_std": float(scores[name].std()),
                 f"gold_diff_vs_{comp}": d, f"gold_diff_vs_{comp}_ci95": [lo, hi],
                 "win_rate_vs_baseline": float(np.mean(wins))}
        entry.update(model_metrics(cfg, name, samples[name], scores[name], out))
        result["policies"][name] = entry
        log(f"[shiftalign] {name}: gold {entry['gold_mean']:.3f} (diff vs {comp} {d:+.3f} [{lo:+.3f}, {hi:+.3f}]), "
            f"win rate {entry['win_rate_vs_baseline']:.3f}, KL {entry['kl_to_baseline']:.3f}")
    write_json_atomic(out / "evaluation.json", result)
    return result


def model_metrics(cfg: EvaluateConfig, name: str, rows: list[dict], gold: np.ndarray, out: Path) -> dict:
    """KL to the baseline and reward-model accuracy of one policy's samples: the costly part (two model
    passes), cached in ``<output_dir>/metrics/<name>.json`` under a key of the samples, the baseline
    and the reward model, so that adding a policy to an evaluation recomputes only that policy."""
    import hashlib

    key = hashlib.sha256(json.dumps([rows, cfg.policies[cfg.baseline], cfg.reward_model, cfg.wrap_text_as_chat,
                                     cfg.seed], sort_keys=True).encode()).hexdigest()[:16]
    cache = out / "metrics" / f"{name}.json"
    if cache.exists():
        stored = json.loads(cache.read_text())
        if stored.get("key") == key:
            return stored["metrics"]
    m = {"kl_to_baseline": 0.0}
    if name != cfg.baseline:
        own = np.array([r["logp"] for r in rows])
        m["kl_to_baseline"] = float(np.mean(own - sequence_logps(cfg.policies[cfg.baseline], rows, cfg.wrap_text_as_chat)))
    if cfg.reward_model:
        m["reward_model_accuracy"] = rm_accuracy(cfg, rows, gold)
    write_json_atomic(cache, {"key": key, "metrics": m})
    return m


def rm_accuracy(cfg: EvaluateConfig, rows: list[dict], gold: np.ndarray) -> float | None:
    """Reward-model accuracy against gold on on-policy pairs (consecutive samples of a prompt)."""
    from ..rl.scorers import reward_model_scorer

    rm = reward_model_scorer(cfg.reward_model, wrap_text_as_chat=cfg.wrap_text_as_chat)
    r = np.array(rm([x["prompt"] for x in rows], [x["completion"] for x in rows]))
    hits, n = 0, 0
    by: dict[str, list[int]] = {}
    for i, x in enumerate(rows):
        by.setdefault(x["prompt_id"], []).append(i)
    rng = random.Random(cfg.seed)
    for idx in by.values():
        if len(idx) < 2:
            continue
        i, j = rng.sample(idx, 2)
        if gold[i] == gold[j]:
            continue
        n += 1
        hits += (r[i] > r[j]) == (gold[i] > gold[j])
    return hits / n if n else None
