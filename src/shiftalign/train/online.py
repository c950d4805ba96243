"""The online RL loop (PPO, RLOO, GRPO): the second loop beside ``train.loop``, sharing its optimiser,
schedule, optimiser step, resume (``train.optim``), checkpoints, metrics log and frozen reference.

Each iteration: sample k responses for a batch of prompts from the current policy (``rollout.decode``,
which also returns the tempered policy's log-prob and entropy of every token it draws: the rollout's
pi_old, with no second forward pass, unless PPO needs values or the update runs under autocast),
score them (``rl.scorers``), add penalties (missing EOS,
length), compute the KL to the reference per token (k1 or k3; fixed or adaptive coefficient),
compute advantages with the configured algorithm (``rl/``), and update the policy over
``epochs_per_rollout`` passes of minibatches. Optional per-prompt importance weights weight each sample's loss and the
whitening statistics. The configuration is ``train.rl_config.RLConfig``: its ``train:`` section is the
offline loop's (learning rate, schedule and warm-up over optimiser steps, clipping, resume, checkpoints,
``sharding``: with ``fsdp`` the policy is sharded, and sampling runs with its parameters gathered).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from ..config import from_dict
from ..data.batching import collate
from ..data.load import load_examples, load_weights
from ..data.text import encode, render_prompt
from ..data.tokenize import Tokenized
from ..errors import ConfigError, DataError
from ..models.load import load_policy
from ..ops.logprobs import backbone_hidden, response_token_logps, unwrap_hf
from ..ops.rl import KL_ESTIMATORS, masked_mean, whiten
from ..rl import RL_ALGOS
from ..rl.scorers import make_scorer
from ..rollout.decode import decode
from . import checkpoint, sharding
from .logger import MetricsLog
from .optim import make_optimizer, optimizer_step, resume_latest
from .reference import frozen_reference, reference_context
from .rl_config import RLConfig


class PolicyWithValue(nn.Module):
    """Per-token log-probs, entropies and (PPO) values of the response tokens of tree rows, under the
    policy at the sampling temperature: logits / T, the distribution the rollouts are drawn from, so
    that the PPO ratio, the KL to the (equally tempered) reference and the entropy are of pi_T."""

    def __init__(self, model: nn.Module, with_value: bool, temperature: float = 1.0):
        super().__init__()
        self.model, self.temperature = model, temperature
        hidden = unwrap_hf(model).config.hidden_size
        self.value_head = nn.Linear(hidden, 1) if with_value else None
        if self.value_head is not None:
            nn.init.zeros_(self.value_head.weight)
            nn.init.zeros_(self.value_head.bias)

    def forward(self, batch: dict, with_entropy: bool = True) -> dict:
        hidden = backbone_hidden(self.model, batch)
        logps, entropy = response_token_logps(self.model, hidden, batch, self.temperature, with_entropy=with_entropy)
        out = {"logps": logps} if entropy is None else {"logps": logps, "entropy": entropy}
        if self.value_head is not None:
            out["values"] = self.value_head(hidden[batch["pred_rows"], batch["pred_pos"]].float())[:, 0]
        return out


def shape_scores(raw: torch.Tensor, finished: torch.Tensor, lengths: torch.Tensor, cfg: RLConfig,
                 weights: torch.Tensor | None = None) -> torch.Tensor:
    """Scores (S,) -> what is optimised: minus ``missing_eos_penalty`` for a response without EOS,
    minus ``length_penalty`` per token, then (``whiten_rewards``) standardised over the rollout with
    the samples' prompt weights (a prompt of weight 0 does not move the statistics)."""
    scores = raw.clone()
    if cfg.missing_eos_penalty is not None:
        scores -= cfg.missing_eos_penalty * (1 - finished)
    scores -= cfg.length_penalty * lengths
    if cfg.whiten_rewards:
        scores = whiten(scores, torch.ones_like(scores) if weights is None else weights)
    return scores


def adapt_kl_coef(coef: float, kl: float, n: int, target: float, horizon: int) -> float:
    """Adaptive KL controller (Ziegler et al., 2019, Sec. 2.2): e = clip(KL / target - 1, -0.2, 0.2),
    beta <- beta (1 + e n / horizon), n the samples of the iteration."""
    err = max(-0.2, min(0.2, kl / target - 1))
    return coef * (1 + err * n / horizon)


def padded(flat: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    out = torch.zeros(len(lengths), max(lengths), dtype=flat.dtype, device=flat.device)
    off = 0
    for i, n in enumerate(lengths):
        out[i, :n] = flat[off:off + n]
        off += n
    return out


class RLTrainer:
    """Online RL on one accelerator; ``fit()`` runs (or resumes) ``cfg.iterations`` iterations."""

    def __init__(self, cfg: RLConfig, acc):
        self.cfg, self.acc = cfg, acc
        knobs = dict(cfg.algorithm)
        self.algo = RL_ALGOS.get(knobs.pop("name", "rloo"))
        self.params = from_dict(self.algo.params, knobs, "algorithm")
        if cfg.kl.estimator not in KL_ESTIMATORS:
            raise ConfigError(f"kl.estimator must be one of {', '.join(KL_ESTIMATORS)}")
        if cfg.sampling.temperature <= 0 or cfg.sampling.top_p < 1 or cfg.sampling.top_k:
            raise ConfigError("rl: sampling needs temperature > 0, top_p 1 and top_k 0: the ratio, KL and entropy are "
                              "those of the tempered policy, which truncated sampling would not draw from")
        if cfg.sampling.n < self.algo.min_samples:
            raise ConfigError(f"{self.algo.name} needs sampling.n >= {self.algo.min_samples} samples per prompt")
        self.prompts = load_examples(cfg.prompts, "prompt")
        self.prompt_weights = load_weights(cfg.prompt_weights) if cfg.prompt_weights else None
        unweighted = [e.id for e in self.prompts if self.prompt_weights is not None and e.id not in self.prompt_weights]
        if unweighted:  # joined now, not at the rollout that first draws such a prompt
            raise DataError(cfg.prompt_weights, None, "id", f"a weight for every prompt; none for id '{unweighted[0]}' "
                            f"({len(unweighted)} of {len(self.prompts)} prompts of {cfg.prompts})")
        self.scorer = make_scorer(cfg.scorer)  # a bad scorer stops here, before the policy is loaded
        model, self.tok = load_policy(cfg.model)
        self.reference = frozen_reference(cfg.model, cfg.reference, acc.device)  # None: LoRA base, adapter off
        policy = PolicyWithValue(model, self.algo.needs_value, cfg.sampling.temperature)
        t = cfg.train
        self.total_steps = cfg.iterations * cfg.updates_per_iteration()  # what the schedule spans
        self.policy = sharding.prepare(policy, acc, t.sharding)
        self.optimizer, self.scheduler = make_optimizer(acc.unwrap_model(self.policy), t.lr, t.weight_decay,
                                                        t.adam_betas, t.schedule, t.warmup_steps, self.total_steps)
        self.kl_coef = cfg.kl.coef
        self.iteration = 0
        self.entropy_in_loss = getattr(self.params, "entropy_coef", 0.0) != 0  # else updates skip the entropy
        # Under autocast the update computes in another precision than the sampling pass, whose log-probs then
        # would not be the update's pi_old: they are recomputed in a forward pass.
        self.rollout_logps_exact = acc.mixed_precision == "no"

    # -- rollout ---------------------------------------------------------------------------------
    def _prompt_batch(self, it: int) -> list:
        per_epoch = list(range(len(self.prompts)))
        P = self.cfg.prompts_per_iteration
        start = it * P * self.acc.num_processes + self.acc.process_index * P
        out = []
        for j in range(start, start + P):
            epoch, pos = divmod(j, len(per_epoch))
            order = per_epoch[:]
            random.Random(f"{self.cfg.seed}:{epoch}").shuffle(order)
            out.append(self.prompts[order[pos]])
        return out

    def _forward(self, module, items, with_entropy: bool) -> tuple[dict, list[int]]:
        """Per-sample (rows = prompts x their samples, in order) padded token tensors of tree rows."""
        batch = {k: v.to(self.acc.device) for k, v in collate(items, self.tok.pad_token_id).items()}
        lengths = [len(c) for it in items for c in it.completion_ids]
        with self.acc.autocast():
            out = module(batch, with_entropy=with_entropy)
        return {k: padded(v.float(), lengths) for k, v in out.items()}, lengths

    @torch.no_grad()
    def rollout(self, it: int) -> tuple[dict, list[Tokenized], dict]:
        cfg, k = self.cfg, self.cfg.sampling.n
        t0 = time.perf_counter()
        exs = self._prompt_batch(it)
        ids = [encode(self.tok, render_prompt(self.tok, e.prompt, cfg.wrap_text_as_chat))[-cfg.max_prompt_length:]
               for e in exs]
        hf = unwrap_hf(self.acc.unwrap_model(self.policy).model)
        hf.eval()
        seed = random.Random(f"{cfg.seed}:rollout:{it}:{self.acc.process_index}").randrange(2**31)
        policy = self.acc.unwrap_model(self.policy)  # sharded: gathered, as processes stop sampling at different steps
        gens = sharding.call_gathered(policy, decode, policy.model, ids, cfg.sampling, seed, self.tok.pad_token_id,
                                      self.tok.eos_token_id, tempered=True)
        # One tree row per prompt, [prompt | sample 1 | ... | sample k]: the prompt is computed once
        items, texts, prompts, finished = [], [], [], []
        for e, p_ids, samples in zip(exs, ids, gens):
            w = 1.0 if self.prompt_weights is None else self.prompt_weights.get(e.id, None)
            if w is None:
                raise ConfigError(f"{cfg.prompt_weights}: no weight for prompt id '{e.id}'")
            items.append(Tokenized(len(items), e.id, p_ids, [s["completion_ids"] for s in samples], w))
            for s in samples:
                texts.append(self.tok.decode(s["completion_ids"], skip_special_tokens=True))
                prompts.append(e.prompt)
                finished.append(s["finished"])
        t_sample = time.perf_counter() - t0
        t0 = time.perf_counter()
        raw = torch.tensor(self.scorer(prompts, texts), dtype=torch.float32, device=self.acc.device)
        t_score = time.perf_counter() - t0
        t0 = time.perf_counter()
        policy = self.acc.unwrap_model(self.policy)
        policy.eval()
        if self.rollout_logps_exact and not self.algo.needs_value:
            # The sampling pass already computed pi_T's log-prob and entropy of every token it drew; a
            # second pass over the same tokens in the same precision recomputes the same numbers.
            lengths = [len(s["completion_ids"]) for samples in gens for s in samples]
            new = {key: padded(torch.cat([s[f"token_{key}"] for samples in gens for s in samples]).to(self.acc.device),
                               lengths) for key in ("logps", "entropy")}
        else:
            new, lengths = self._forward(policy, items, with_entropy=True)  # the entropy is logged
        if self.reference is None:
            with reference_context(policy.model):
                ref, _ = self._forward(PolicyWithValue(policy.model, False, cfg.sampling.temperature), items, False)
        else:
            ref, _ = self._forward(PolicyWithValue(self.reference, False, cfg.sampling.temperature), items, False)
        policy.train()
        mask = padded(torch.ones(sum(lengths), device=self.acc.device), lengths)
        eos = torch.tensor(finished, dtype=torch.float32, device=self.acc.device)
        weights = torch.tensor([i.weight for i in items for _ in range(k)], device=self.acc.device)
        scores = shape_scores(raw, eos, mask.sum(1), cfg, weights)
        kl = KL_ESTIMATORS[cfg.kl.estimator](new["logps"], ref["logps"]) * mask
        roll = {"logps_old": new["logps"], "ref_logps": ref["logps"], "mask": mask, "kl": kl, "scores": scores,
                "values_old": new.get("values", torch.zeros_like(mask)), "group": torch.arange(len(exs), device=self.acc.device).repeat_interleave(k),
                "k": k, "weights": weights}
        roll.update(self.algo.advantages(roll, self.params, self.kl_coef))
        stats = {"reward_mean": raw.mean().item(), "reward_std": raw.std().item() if len(raw) > 1 else 0.0,
                 "score_mean": scores.mean().item(), "kl": (kl.sum(1)).mean().item(),
                 "entropy": masked_mean(new["entropy"], mask).item(), "response_length": mask.sum(1).mean().item(),
                 "eos_fraction": eos.mean().item(), "time_sample": t_sample, "time_score": t_score,
                 "time_reference": time.perf_counter() - t0}
        return roll, items, stats

    # -- update ----------------------------------------------------------------------------------
    def update(self, roll: dict, items: list[Tokenized]) -> dict:
        """Minibatches of whole prompts (``minibatch_size`` samples = that many // k tree rows)."""
        cfg, k = self.cfg, self.cfg.sampling.n
        rows_per_mb = max(1, cfg.minibatch_size // k)
        rng = random.Random(f"{cfg.seed}:update:{self.iteration}")
        agg: dict[str, list[float]] = {}
        for _ in range(cfg.epochs_per_rollout):
            order = list(range(len(items)))
            rng.shuffle(order)
            for s in range(0, len(items), rows_per_mb):
                rows = sorted(order[s:s + rows_per_mb])
                mb = [r * k + j for r in rows for j in range(k)]
                new, _ = self._forward(self.policy, [items[r] for r in rows], self.entropy_in_loss)
                sub = {k: (v[mb][:, : new["logps"].shape[1]] if torch.is_tensor(v) and v.dim() == 2 else
                           v[mb] if torch.is_tensor(v) and v.dim() == 1 else v) for k, v in roll.items()}
                loss_vec, metrics = self.algo.loss(new, sub, self.params, self.kl_coef)
                w = sub["weights"]
                loss = (w * loss_vec).sum() / w.sum().clamp(min=1e-12)
                self.acc.backward(loss)
                grad_norm, lr = optimizer_step(self.acc, self.policy, self.optimizer, self.scheduler,
                                               cfg.train.max_grad_norm)
                step = {"loss": loss.item(), "lr": lr, **({} if grad_norm is None else {"grad_norm": grad_norm})}
                for key, v in {**step, **metrics}.items():
                    agg.setdefault(key, []).append(v)
        return {k: sum(v) / len(v) for k, v in agg.items()}

    def _adapt_kl(self, kl: float, n: int) -> None:
        t = self.cfg.kl
        if t.target is not None:
            self.kl_coef = adapt_kl_coef(self.kl_coef, kl, n, t.target, t.horizon)

    def fit(self) -> dict:
        cfg, t = self.cfg, self.cfg.train
        out = Path(cfg.output_dir)
        ckpt = out / "checkpoints"
        state = resume_latest(ckpt, self.acc.unwrap_model(self.policy), self.optimizer, self.scheduler, self.acc,
                              t.resume)
        if state is not None:
            self.iteration, self.kl_coef = state["step"], state["kl_coef"]
        metrics = MetricsLog(out / "metrics.jsonl", self.acc, resume_step=self.iteration)
        bar = tqdm(total=cfg.iterations, initial=self.iteration, desc=f"rl/{self.algo.name}", unit="it",
                   disable=not (t.progress and self.acc.is_main_process))
        record: dict = {}
        while self.iteration < cfg.iterations:
            roll, items, stats = self.rollout(self.iteration)
            t0 = time.perf_counter()
            upd = self.update(roll, items)
            self.iteration += 1
            record = {"step": self.iteration, **stats, **upd, "kl_coef": self.kl_coef,
                      "time_update": time.perf_counter() - t0}
            self._adapt_kl(stats["kl"], len(items) * cfg.sampling.n)
            metrics.log(record)
            bar.update(1)
            bar.set_postfix(reward=f"{stats['reward_mean']:.3f}", kl=f"{stats['kl']:.3f}")
            if (t.save_every and self.iteration % t.save_every == 0) or self.iteration == cfg.iterations:
                checkpoint.save(ckpt, self.iteration, self.acc.unwrap_model(self.policy), self.optimizer,
                                self.scheduler, {"kl_coef": self.kl_coef}, self.acc, t.keep_checkpoints)
        bar.close()
        return record
