"""``shiftalign evaluate CONFIG``: compare policies on held-out target prompts with a gold scorer.

For every policy: sample ``n`` responses per prompt (``rollout.sample``, cached and resumable),
score them with the gold scorer (``rl.scorers``; default VADER sentiment), and report
- gold reward: mean, with a paired-bootstrap 95 % interval of its difference to a comparison
  policy (prompts resampled with replacement; Efron & Tibshirani, 1993, Ch. 16);
- win rate against the baseline policy: per prompt, P(gold(policy) > gold(baseline)), ties 1/2;
- KL to the baseline, of the sampling distributions: both policies at the sampling temperature T,
  KL(pi_T || pi_base,T), computed on the policy's own samples as the sum over response positions of
  the exact per-token KL between the two tempered next-token distributions (``ops.kl``; never
  negative), with a bootstrap 95 % interval over prompts. With the decode backend the policy's terms
  come from the logits its samples were drawn from and only the baseline runs a forward (``rollout.kl``);
  other backends run both models over the samples (``sequence_kls``). top-p / top-k are not applied to either
  distribution (a truncated baseline would put zero mass on tokens the policy samples, and the KL
  would be infinite); with them the samples' prefixes come from the truncated policy. At T = 0
  (greedy) the KL is that of the two models at T = 1;
- with ``reward_model`` set: that model's accuracy against the gold preference on on-policy pairs
  (every two samples of the same prompt whose gold scores differ).
Writes ``evaluation.json`` atomically; samples and the per-policy model metrics are cached, so a rerun
with one more policy computes only that policy.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import ModelConfig
from ..data.batching import collate
from ..data.load import load_examples
from ..data.text import encode, render_prompt
from ..data.tokenize import Tokenized
from ..errors import ConfigError
from ..io import read_jsonl, write_json_atomic
from ..log import log
from ..metrics import pair_accuracy
from ..models.fingerprint import files_fingerprint
from ..models.load import load_policy
from ..models.packaged import check_model_path
from ..ops.kl import tempered_token_kl
from ..ops.logprobs import backbone_hidden, response_logits, sum_by_branch
from ..rl.scorers import make_scorer
from ..rollout.backends import SAMPLERS
from ..rollout.params import SamplingParams, VLLMConfig
from ..rollout.sample import SampleConfig
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
    backend: str = "decode"  # the sampling backend (rollout.backends): decode | hf | vllm
    vllm: VLLMConfig = field(default_factory=VLLMConfig)  # with backend vllm: the engine's settings
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


def samples_file(output_dir: str | Path, name: str) -> Path:
    """Where the evaluation written to ``output_dir`` keeps policy ``name``'s samples (read again by the
    experiment's gold-free selection, ``experiment.candidates``)."""
    return Path(output_dir) / "samples" / f"{name}.jsonl"


def kl_temperature(p: SamplingParams) -> float:
    return p.temperature if p.temperature > 0 else 1.0


@torch.inference_mode()
def sequence_kls(model_path: str, base_path: str, rows: list[dict], wrap: bool, temperature: float,
                 branches_per_batch: int = 16) -> np.ndarray:
    """Per sample: sum over its response positions of KL(policy_T || base_T) at that position (see ``ops.kl``).
    The samples of one prompt go through the models as branches of one row (the prompt computed once,
    tree attention as in training), so that n samples per prompt cost one prompt's forward, not n."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # both models on the accelerator when there is one
    policy, tok = load_policy(ModelConfig(path=model_path))
    base, _ = load_policy(ModelConfig(path=base_path))
    policy.eval().to(device)
    base.eval().to(device)
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(json.dumps([r["prompt_id"], r["prompt"]]), []).append(i)
    out = np.zeros(len(rows))
    for k, same in itertools.groupby(sorted(groups.values(), key=len), key=len):  # a batch: rows of k branches
        same = list(same)
        step = max(1, branches_per_batch // k)
        for chunk in (same[s:s + step] for s in range(0, len(same), step)):
            items = [Tokenized(n, rows[idx[0]]["id"], encode(tok, render_prompt(tok, rows[idx[0]]["prompt"], wrap)),
                               [rows[i]["completion_ids"] for i in idx]) for n, idx in enumerate(chunk)]
            batch = {k: v.to(device) for k, v in collate(items, tok.pad_token_id).items()}
            z = response_logits(policy, backbone_hidden(policy, batch), batch)
            u = response_logits(base, backbone_hidden(base, batch), batch)
            kl = sum_by_branch(tempered_token_kl(z, u, temperature), batch).double().cpu().numpy()
            for b, idx in enumerate(chunk):
                out[idx] = kl[b]
    return out


def main(cfg: EvaluateConfig) -> dict:
    if cfg.baseline not in cfg.policies:
        raise ConfigError(f"baseline '{cfg.baseline}' is not one of the policies: {', '.join(cfg.policies)}")
    out = Path(cfg.output_dir)
    load_examples(cfg.prompts, "prompt")  # the prompts and every model path, before any policy is loaded
    for what, path in [*((f"policies.{n}", p) for n, p in cfg.policies.items()), ("reward_model", cfg.reward_model)]:
        if path:
            check_model_path(path, what)
    SAMPLERS.get(cfg.backend)
    gold = make_scorer(cfg.gold)
    samples, scores = {}, {}
    for name, path in cfg.policies.items():
        reads_kl = SAMPLERS.get(cfg.backend).reads_kl and name != cfg.baseline  # the KL from the sampling pass
        sc = SampleConfig(prompts=cfg.prompts, output=str(samples_file(out, name)),
                          policy=ModelConfig(path=path), sampling=cfg.sampling, wrap_text_as_chat=cfg.wrap_text_as_chat,
                          backend=cfg.backend, vllm=cfg.vllm, kl_to=cfg.policies[cfg.baseline] if reads_kl else None,
                          replace_stale=True, progress=cfg.progress)
        sample_main(sc)
        rows = read_jsonl(sc.output)
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
    result = {"prompts": len(prompt_ids), "prompt_ids": prompt_ids, "samples_per_prompt": cfg.sampling.n,
              "gold": cfg.gold, "policies": {},
              "kl": f"KL(policy || {cfg.baseline}) of the sampling distributions at temperature "
                    f"{kl_temperature(cfg.sampling)}, nats per response: exact per-token KL summed over the "
                    "policy's own samples"}
    for name, path in cfg.policies.items():
        mean, by = per_prompt(name)
        wins = [np.mean([(x > y) + 0.5 * (x == y) for x in by[p] for y in base_by[p]]) for p in prompt_ids]
        d, lo, hi = paired_bootstrap(mean, comp_mean, cfg.bootstrap, cfg.seed)
        entry = {"model": path, "gold_mean": float(mean.mean()), "gold_std": float(scores[name].std()),
                 f"gold_diff_vs_{comp}": d, f"gold_diff_vs_{comp}_ci95": [lo, hi],
                 "win_rate_vs_baseline": float(np.mean(wins))}
        metrics = model_metrics(cfg, name, samples[name], scores[name], out)
        kl_by: dict[str, list[float]] = {}
        for r, k in zip(samples[name], metrics.pop("sample_kl")):
            kl_by.setdefault(r["prompt_id"], []).append(k)
        kl = np.array([np.mean(kl_by[p]) for p in prompt_ids])
        _, kl_lo, kl_hi = paired_bootstrap(kl, np.zeros_like(kl), cfg.bootstrap, cfg.seed)
        entry.update(kl_to_baseline=float(kl.mean()), kl_to_baseline_ci95=[kl_lo, kl_hi], **metrics,
                     gold_per_prompt=mean.tolist(), kl_per_prompt=kl.tolist(), win_rate_per_prompt=list(map(float, wins)))
        result["policies"][name] = entry
        log(f"{name}: gold {entry['gold_mean']:.3f} (diff vs {comp} {d:+.3f} [{lo:+.3f}, {hi:+.3f}]), "
            f"win rate {entry['win_rate_vs_baseline']:.3f}, KL {entry['kl_to_baseline']:.3f} nats")
    write_json_atomic(out / "evaluation.json", result)
    return result


def model_metrics(cfg: EvaluateConfig, name: str, rows: list[dict], gold: np.ndarray, out: Path) -> dict:
    """Per-sample KL to the baseline and reward-model accuracy of one policy's samples: the costly part
    (model passes), cached in ``<output_dir>/metrics/<name>.json`` under a key of the samples (whose
    ``sample_key`` fingerprints the policy's files and the sampling settings), the baseline's and the
    reward model's files, so that adding a policy to an evaluation recomputes only that policy. With a
    reward model the key also holds the samples' gold scores, which its accuracy is measured against: a
    gold scorer changed in any way (name, knobs, the content of its function's file, a library version)
    that changes a score invalidates the entry, and one that changes none does not."""
    import hashlib

    key = hashlib.sha256(json.dumps([rows, files_fingerprint(cfg.policies[cfg.baseline]),
                                     cfg.reward_model and files_fingerprint(cfg.reward_model), cfg.wrap_text_as_chat,
                                     kl_temperature(cfg.sampling), cfg.seed, cfg.reward_model and gold.tolist()],
                                    sort_keys=True).encode()).hexdigest()[:16]
    cache = out / "metrics" / f"{name}.json"
    if cache.exists():
        stored = json.loads(cache.read_text())
        if stored.get("key") == key:
            return stored["metrics"]
    m: dict = {"sample_kl": [0.0] * len(rows)}
    if name != cfg.baseline and all("kl" in r for r in rows):  # read during sampling (rollout.kl)
        m["sample_kl"] = [float(r["kl"]) for r in rows]
    elif name != cfg.baseline:
        m["sample_kl"] = sequence_kls(cfg.policies[name], cfg.policies[cfg.baseline], rows, cfg.wrap_text_as_chat,
                                      kl_temperature(cfg.sampling)).tolist()
    if cfg.reward_model:
        m["reward_model_accuracy"], m["reward_model_pairs"] = rm_accuracy(cfg, rows, gold)
    write_json_atomic(cache, {"key": key, "metrics": m})
    return dict(m)


def rm_accuracy(cfg: EvaluateConfig, rows: list[dict], gold: np.ndarray) -> tuple[float | None, int]:
    """Reward-model accuracy against gold on on-policy pairs: every two samples of a prompt whose gold
    scores differ; (accuracy, number of pairs), accuracy None without a pair. A reward-model tie counts 1/2."""
    from ..rl.scorers import reward_model_scorer

    rm = reward_model_scorer(cfg.reward_model, wrap_text_as_chat=cfg.wrap_text_as_chat)
    r = np.array(rm([x["prompt"] for x in rows], [x["completion"] for x in rows]))
    return pair_accuracy(r, gold, [x["prompt_id"] for x in rows])
