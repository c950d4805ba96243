"""The one training loop, for every recipe, on ``accelerate``.

Weighted reduction (CONTRIBUTING.md, rule 2): with per-example losses l_i, static weights w_i (a weights file,
a ``weight`` column) and in-loop factors f_i (policy-ratio weights, recomputed from the current
policy; 1 when absent), one optimiser step minimises

    L = sum_i w_i f_i l_i / sum_i w_i f_i

where both sums run over the whole step: every micro-batch of every process. The factors are only
known after each micro-batch's forward pass, so every micro-batch back-propagates its unnormalised
sum_(i in mb) w_i f_i l_i (times the number of processes, which undoes data-parallel averaging); once
the step's micro-batches are done, sum_i w_i f_i is all-reduced and the accumulated gradients are
divided by it, before clipping and the optimiser step. Gradient accumulation, weights, in-loop
factors and data parallelism therefore compose exactly: the step equals one single-process pass
over the global batch. With the config's ``train.sharding: fsdp`` the model is sharded over the
processes (module ``train.sharding``) and the same reduction holds: gradients are reduce-scattered, averaged.

A loss that needs a statistic of the whole step before any gradient (``LossSpec.step_statistic``:
KTO's reference point z0, the mean log-ratio of its mismatched pairs) gets it from a no-gradient
pass over the step's micro-batches, summed over processes, as ``out["step_mean"]``.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from ..config import RunConfig
from ..data.batching import collate, split_step, step_batches
from ..data.tokenize import Tokenized
from ..errors import ConfigError
from ..log import log
from ..losses import LossSpec
from . import checkpoint, sharding
from .logger import MetricsLog
from .optim import make_optimizer, optimizer_step, resume_latest


@dataclass
class Task:
    """What a recipe hands the loop."""

    scorer: torch.nn.Module  # forward(batch) -> {"logps", "lengths"} or {"rewards"}
    spec: LossSpec
    params: object
    train_items: list[Tokenized]
    pad_id: int
    eval_items: list[Tokenized] | None = None
    ref_train: torch.Tensor | None = None  # (N, k) reference log-probs, by dataset position
    ref_eval: torch.Tensor | None = None
    eval_extra: Callable | None = None  # (unwrapped scorer, batch, out) -> {name: (sum, count)}; reported as sum / count
    dynamic_weights: Callable | None = None  # out -> (B,) detached factor on the static weights
    snapshot: Callable | None = None  # (step, unwrapped scorer) -> None: saves the model at train.snapshots' steps


def snapshot_steps(fractions: list[float], total_steps: int) -> list[int]:
    """The optimiser steps at which ``train.snapshots`` saves the model: each fraction of the run's steps,
    rounded, at least step 1 and before the last (the final model is saved anyway); repeats once."""
    bad = [f for f in fractions if not 0 < f < 1]
    if bad:
        raise ConfigError(f"train.snapshots: fractions of the run's steps must lie in (0, 1), got {bad}")
    return sorted({max(1, round(f * total_steps)) for f in fractions} - {total_steps})


def _to(batch: dict, device) -> dict:
    return {k: v.to(device) for k, v in batch.items()}


class Trainer:
    def __init__(self, cfg: RunConfig, task: Task, accelerator):
        self.cfg, self.task, self.acc = cfg, task, accelerator
        t = cfg.train
        world = accelerator.num_processes
        if t.batch_size % (t.micro_batch_size * world):
            raise ConfigError(f"train.batch_size ({t.batch_size}) must be a multiple of train.micro_batch_size "
                              f"({t.micro_batch_size}) x processes ({world})")
        self.accum = t.batch_size // (t.micro_batch_size * world)
        n = len(task.train_items)
        self.steps_per_epoch = n // t.batch_size
        if self.steps_per_epoch == 0:
            raise ConfigError(f"train.batch_size ({t.batch_size}) is larger than the training set ({n} examples)")
        total = self.steps_per_epoch * t.epochs
        self.total_steps = min(total, t.max_steps) if t.max_steps > 0 else total
        self.out = Path(cfg.output_dir)
        self.lengths = [it.row_length for it in task.train_items]
        self.model = sharding.prepare(task.scorer, accelerator, t.sharding)
        self.optimizer, self.scheduler = make_optimizer(accelerator.unwrap_model(self.model), t.lr, t.weight_decay,
                                                        t.adam_betas, t.schedule, t.warmup_steps, self.total_steps)
        self.step = 0
        self.snapshot_steps = snapshot_steps(t.snapshots, self.total_steps)

    # -- helpers -------------------------------------------------------------------------------
    def _sum(self, x: torch.Tensor) -> torch.Tensor:
        return self.acc.reduce(x.to(self.acc.device), reduction="sum") if self.acc.num_processes > 1 else x

    def _forward(self, model, items: list[Tokenized], ref: torch.Tensor | None, step_mean: torch.Tensor | None = None):
        batch = _to(collate(items, self.task.pad_id), self.acc.device)
        with self.acc.autocast():
            out = model(batch)
        if self.task.spec.needs_reference:
            out["ref_logps"] = ref[batch["index"].cpu()].to(self.acc.device)
        if "labels" in batch:
            out["labels"] = batch["labels"]
        if step_mean is not None:
            out["step_mean"] = step_mean
        loss, metrics = self.task.spec.compute(out, self.task.params)
        if self.task.dynamic_weights is not None:
            factor = self.task.dynamic_weights(out).detach()
            batch["weights"] = batch["weights"] * factor
            metrics = {**metrics, "policy_weight": factor}
        return batch, out, loss, metrics

    @torch.no_grad()
    def _step_mean(self, model, chunks: list[list[Tokenized]], ref: torch.Tensor | None) -> torch.Tensor | None:
        """Mean of the loss's ``step_statistic`` over every row of ``chunks`` on every process."""
        stat = self.task.spec.step_statistic
        if stat is None:
            return None
        total = torch.zeros(2, dtype=torch.float64)
        for items in chunks:
            batch = _to(collate(items, self.task.pad_id), self.acc.device)
            with self.acc.autocast():
                out = model(batch)
            if self.task.spec.needs_reference:
                out["ref_logps"] = ref[batch["index"].cpu()].to(self.acc.device)
            values = stat(out).double().cpu()
            total += torch.stack([values.sum(), torch.tensor(float(len(values)), dtype=torch.float64)])
        s, n = self._sum(total).tolist()
        return torch.tensor(s / max(n, 1.0), dtype=torch.float32, device=self.acc.device)

    # -- one optimiser step --------------------------------------------------------------------
    def train_step(self, step_indices: list[int]) -> dict:
        t, items = self.cfg.train, self.task.train_items
        micro = split_step(step_indices, self.lengths, t.micro_batch_size, self.acc.num_processes, self.acc.process_index)
        local = [items[i].weight for mb in micro for i in mb]
        W_static, n_step = self._sum(torch.tensor([sum(local), len(local)], dtype=torch.float64)).tolist()
        if W_static <= 0:
            log(f"step {self.step + 1}: every weight is zero; the step is skipped")
            return {"skipped": 1.0}
        step_mean = self._step_mean(self.model, [[items[i] for i in mb] for mb in micro], self.task.ref_train)
        stats: dict[str, float] = {"_loss": 0.0, "_w": 0.0, "_w2": 0.0, "_n": 0.0}
        tokens = 0
        for j, mb in enumerate(micro):
            sync = contextlib.nullcontext() if j == len(micro) - 1 else self.acc.no_sync(self.model)
            with sync:
                batch, out, loss_vec, metrics = self._forward(self.model, [items[i] for i in mb], self.task.ref_train,
                                                              step_mean)
                w = batch["weights"]
                weighted = (w * loss_vec).sum()
                # Unnormalised: divided by the step's sum of effective weights once it is known (below).
                self.acc.backward(weighted * self.acc.num_processes)
            tokens += sum(items[i].row_length for i in mb)
            wd = w.detach().double()
            stats["_loss"] += float(weighted.detach())
            stats["_w"] += float(wd.sum())
            stats["_w2"] += float((wd * wd).sum())
            stats["_n"] += len(mb)
            for k, v in metrics.items():
                stats[k] = stats.get(k, 0.0) + float(v.float().sum())
        keys = sorted(stats)
        stats = dict(zip(keys, self._sum(torch.tensor([stats[k] for k in keys], dtype=torch.float64)).tolist()))
        W = stats.pop("_w")
        if not W > 0:
            self.optimizer.zero_grad(set_to_none=True)
            log(f"step {self.step + 1}: the effective weights sum to {W}; the step is skipped")
            return {"skipped": 1.0}
        for p in self.model.parameters():
            if p.grad is not None:
                p.grad.div_(W)
        grad_norm, lr = optimizer_step(self.acc, self.model, self.optimizer, self.scheduler, t.max_grad_norm)
        n, W2 = stats.pop("_n"), stats.pop("_w2")
        record = {"loss": stats.pop("_loss") / W, **{k: v / n for k, v in stats.items()}}
        record["weight_sum"] = W
        # Kish ESS / N of the weights this step trained with (static weights times any in-loop factor)
        record["weight_ess_fraction"] = W * W / (n_step * W2)
        if grad_norm is not None:
            record["grad_norm"] = grad_norm
        record["lr"] = lr
        record["tokens"] = float(self._sum(torch.tensor(float(tokens))))
        return record

    # -- evaluation ----------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> dict:
        items = self.task.eval_items
        if not items:
            return {}
        model = self.acc.unwrap_model(self.model)
        was = model.training
        model.eval()
        mine = list(range(self.acc.process_index, len(items), self.acc.num_processes))
        bs = self.cfg.train.reference_batch_size
        chunks = [[items[i] for i in mine[s:s + bs]] for s in range(0, len(mine), bs)]
        # Sharded, with every parameter gathered: processes with different numbers of chunks need not keep in step
        sums = sharding.call_gathered(model, self._eval_sums, model, chunks)
        model.train(was)
        keys = sorted(sums)
        if self.acc.num_processes > 1:  # a process with fewer rows than processes has none, and no keys
            from accelerate.utils import gather_object

            keys = sorted(set(gather_object(keys)))
        total = dict(zip(keys, self._sum(torch.tensor([sums.get(k, 0.0) for k in keys], dtype=torch.float64)).tolist()))
        w, n = total.pop("_w"), total.pop("_n")
        result = {"eval/loss": total.pop("loss") / max(w, 1e-12)}
        for k in [k[:-4] for k in total if k.endswith("/num")]:
            result[f"eval/{k}"] = total.pop(f"{k}/num") / max(total.pop(f"{k}/den"), 1e-12)
        result.update({f"eval/{k}": v / n for k, v in total.items()})
        return result

    def _eval_sums(self, model, chunks: list[list[Tokenized]]) -> dict[str, float]:
        step_mean = self._step_mean(model, chunks, self.task.ref_eval)
        sums: dict[str, float] = {}
        for chunk in chunks:
            batch, out, loss_vec, metrics = self._forward(model, chunk, self.task.ref_eval, step_mean)
            w = batch["weights"]
            sums["loss"] = sums.get("loss", 0.0) + float((w * loss_vec).sum())
            sums["_w"] = sums.get("_w", 0.0) + float(w.sum())
            sums["_n"] = sums.get("_n", 0.0) + len(chunk)
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + float(v.float().sum())
            if self.task.eval_extra is not None:  # ratio metrics: (numerator, denominator) summed separately
                for k, (num, den) in self.task.eval_extra(model, batch, out).items():
                    sums[f"{k}/num"] = sums.get(f"{k}/num", 0.0) + float(num)
                    sums[f"{k}/den"] = sums.get(f"{k}/den", 0.0) + float(den)
        return sums

    # -- the loop ------------------------------------------------------------------------------
    def fit(self) -> dict:
        t = self.cfg.train
        ckpt_dir = self.out / "checkpoints"
        state = resume_latest(ckpt_dir, self.acc.unwrap_model(self.model), self.optimizer, self.scheduler, self.acc,
                              t.resume)
        if state is not None:
            self.step = state["step"]
        metrics = MetricsLog(self.out / "metrics.jsonl", self.acc, resume_step=self.step)
        bar = tqdm(total=self.total_steps, initial=self.step, disable=not (t.progress and self.acc.is_main_process),
                   desc=self.cfg.recipe, unit="step", dynamic_ncols=True)
        last_record: dict = {}
        self.model.train()
        for epoch in range(t.epochs):
            batches = step_batches(len(self.task.train_items), t.batch_size, self.cfg.seed, epoch)
            for s, step_indices in enumerate(batches):
                global_step = epoch * self.steps_per_epoch + s
                if global_step < self.step:
                    continue  # finished before the checkpoint we resumed from
                if self.step >= self.total_steps:
                    break
                t0 = time.perf_counter()
                record = self.train_step(step_indices)
                self.step += 1
                dt = time.perf_counter() - t0
                record.update(step=self.step, epoch=epoch + (s + 1) / self.steps_per_epoch, step_time=dt,
                              tokens_per_s=record.get("tokens", 0.0) / dt)
                if t.eval_every and self.step % t.eval_every == 0 and self.step < self.total_steps:
                    record.update(self.evaluate())
                if self.step % t.log_every == 0 or self.step == self.total_steps:
                    metrics.log(record)
                last_record = record
                bar.update(1)
                bar.set_postfix(loss=f"{record.get('loss', float('nan')):.4f}", tok_s=f"{record['tokens_per_s']:.0f}")
                if self.step in self.snapshot_steps and self.task.snapshot is not None:
                    self.task.snapshot(self.step, self.acc.unwrap_model(self.model))
                if t.save_every and self.step % t.save_every == 0 and self.step < self.total_steps:
                    checkpoint.save(ckpt_dir, self.step, self.acc.unwrap_model(self.model), self.optimizer,
                                    self.scheduler, {"epoch": epoch}, self.acc, t.keep_checkpoints)
        bar.close()
        final_eval = self.evaluate()
        if final_eval:
            metrics.log({"step": self.step, **final_eval})
            log("evaluation: " + ", ".join(f"{k}={v:.4f}" for k, v in final_eval.items()))
        if t.keep_optimizer_state and (checkpoint.latest(ckpt_dir) is None
                                       or checkpoint.latest(ckpt_dir).name != f"step-{self.step:08d}"):
            checkpoint.save(ckpt_dir, self.step, self.acc.unwrap_model(self.model), self.optimizer, self.scheduler,
                            {"epoch": t.epochs}, self.acc, t.keep_checkpoints)
        return {"steps": self.step, "train": last_record, "eval": final_eval}
