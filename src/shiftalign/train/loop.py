"""The one training loop, for every recipe, on ``accelerate``.

Weighted reduction (house rule 2): with per-example losses l_i and weights w_i, one optimiser step
minimises

    L = sum_i w_i l_i / sum_i w_i

where both sums run over the whole step: every micro-batch of every process. The sum of weights is
all-reduced before the first micro-batch, each micro-batch contributes sum_(i in mb) w_i l_i / W,
and since data-parallel averaging divides gradients by the number of processes, each process
scales its contribution by that number. Gradient accumulation, weights and data parallelism
therefore compose exactly: the step equals one single-process pass over the global batch.
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
from ..losses import LossSpec
from . import checkpoint
from .logger import MetricsLog


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
    eval_extra: Callable | None = None  # (unwrapped scorer, batch, out) -> dict of summed metrics
    dynamic_weights: Callable | None = None  # out -> (B,) detached factor on the static weights


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
        params = [p for p in task.scorer.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=t.lr, betas=tuple(t.adam_betas), weight_decay=t.weight_decay)
        from transformers import get_scheduler

        name = {"constant": "constant_with_warmup"}.get(t.schedule, t.schedule)
        if name not in ("cosine", "linear", "constant_with_warmup"):
            raise ConfigError(f"train.schedule: expected cosine, linear or constant, got {t.schedule!r}")
        self.scheduler = get_scheduler(name, self.optimizer, num_warmup_steps=t.warmup_steps,
                                       num_training_steps=self.total_steps)
        self.model = accelerator.prepare(task.scorer)
        self.step = 0

    # -- helpers -------------------------------------------------------------------------------
    def _log(self, msg: str) -> None:
        if self.acc.is_main_process:
            tqdm.write(f"[shiftalign] {msg}")

    def _sum(self, x: torch.Tensor) -> torch.Tensor:
        return self.acc.reduce(x.to(self.acc.device), reduction="sum") if self.acc.num_processes > 1 else x

    def _forward(self, model, items: list[Tokenized], ref: torch.Tensor | None):
        batch = _to(collate(items, self.task.pad_id), self.acc.device)
        with self.acc.autocast():
            out = model(batch)
        if self.task.spec.needs_reference:
            out["ref_logps"] = ref[batch["index"].cpu()].to(self.acc.device)
        if "labels" in batch:
            out["labels"] = batch["labels"]
        loss, metrics = self.task.spec.compute(out, self.task.params)
        if self.task.dynamic_weights is not None:
            factor = self.task.dynamic_weights(out)
            batch["weights"] = batch["weights"] * factor
            metrics = {**metrics, "policy_weight": factor, "policy_weight_sq": factor * factor}
        return batch, out, loss, metrics

    # -- one optimiser step --------------------------------------------------------------------
    def train_step(self, step_indices: list[int]) -> dict:
        t, items = self.cfg.train, self.task.train_items
        micro = split_step(step_indices, self.lengths, t.micro_batch_size, self.acc.num_processes, self.acc.process_index)
        local = [items[i].weight for mb in micro for i in mb]
        W, W2, n_step = self._sum(torch.tensor([sum(local), sum(w * w for w in local), len(local)], dtype=torch.float64)).tolist()
        stats: dict[str, float] = {}
        if W <= 0:
            self._log(f"step {self.step + 1}: every weight is zero; the step is skipped")
            return {"skipped": 1.0}
        scale = self.acc.num_processes / W
        tokens = 0
        for j, mb in enumerate(micro):
            sync = contextlib.nullcontext() if j == len(micro) - 1 else self.acc.no_sync(self.model)
            with sync:
                batch, out, loss_vec, metrics = self._forward(self.model, [items[i] for i in mb], self.task.ref_train)
                w = batch["weights"]
                weighted = (w * loss_vec).sum()
                self.acc.backward(weighted * scale)
            tokens += sum(items[i].row_length for i in mb)
            stats["loss"] = stats.get("loss", 0.0) + float(weighted.detach()) / W
            for k, v in metrics.items():
                stats[k] = stats.get(k, 0.0) + float(v.float().sum())
            stats["_n"] = stats.get("_n", 0.0) + len(mb)
        grad_norm = None
        if t.max_grad_norm > 0:
            grad_norm = float(self.acc.clip_grad_norm_(self.model.parameters(), t.max_grad_norm))
        lr = self.scheduler.get_last_lr()[0]  # the rate this step used
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        keys = sorted(stats)
        summed = self._sum(torch.tensor([stats[k] for k in keys], dtype=torch.float64)).tolist()
        stats = dict(zip(keys, summed))
        n = stats.pop("_n")
        record = {"loss": stats.pop("loss"), **{k: v / n for k, v in stats.items()}}
        record["weight_sum"] = W
        record["weight_ess_fraction"] = W * W / (n_step * W2)  # Kish ESS / N of this step's static weights
        if "policy_weight_sq" in record:  # and of the in-loop policy-ratio factor (mean^2 / mean of squares)
            record["policy_weight_ess_fraction"] = record["policy_weight"] ** 2 / record.pop("policy_weight_sq")
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
        sums: dict[str, float] = {}
        bs = self.cfg.train.reference_batch_size
        for s in range(0, len(mine), bs):
            chunk = [items[i] for i in mine[s:s + bs]]
            batch, out, loss_vec, metrics = self._forward(model, chunk, self.task.ref_eval)
            w = batch["weights"]
            sums["loss"] = sums.get("loss", 0.0) + float((w * loss_vec).sum())
            sums["_w"] = sums.get("_w", 0.0) + float(w.sum())
            sums["_n"] = sums.get("_n", 0.0) + len(chunk)
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + float(v.float().sum())
            if self.task.eval_extra is not None:
                for k, v in self.task.eval_extra(model, batch, out).items():
                    sums[k] = sums.get(k, 0.0) + float(v)
        model.train(was)
        keys = sorted(sums)
        total = dict(zip(keys, self._sum(torch.tensor([sums[k] for k in keys], dtype=torch.float64)).tolist()))
        w, n = total.pop("_w"), total.pop("_n")
        result = {"eval/loss": total.pop("loss") / max(w, 1e-12)}
        tok = total.pop("_kl_tokens", None)
        if tok:
            result["eval/kl_to_reference"] = total.pop("kl_sum") / tok
        result.update({f"eval/{k}": v / n for k, v in total.items()})
        return result

    # -- the loop ------------------------------------------------------------------------------
    def fit(self) -> dict:
        t = self.cfg.train
        ckpt_dir = self.out / "checkpoints"
        last = checkpoint.latest(ckpt_dir) if t.resume else None
        if last is not None:
            state = checkpoint.load(last, self.acc.unwrap_model(self.model), self.optimizer, self.scheduler, self.acc)
            self.step = state["step"]
            self._log(f"resuming from {last} (step {self.step} of {self.total_steps})")
        log = MetricsLog(self.out / "metrics.jsonl", self.acc, resume_step=self.step)
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
                    log.log(record)
                last_record = record
                bar.update(1)
                bar.set_postfix(loss=f"{record.get('loss', float('nan')):.4f}", tok_s=f"{record['tokens_per_s']:.0f}")
                if t.save_every and self.step % t.save_every == 0 and self.step < self.total_steps:
                    checkpoint.save(ckpt_dir, self.step, self.acc.unwrap_model(self.model), self.optimizer,
                                    self.scheduler, {"epoch": epoch}, self.acc, t.keep_checkpoints)
        bar.close()
        final_eval = self.evaluate()
        if final_eval:
            log.log({"step": self.step, **final_eval})
            self._log("evaluation: " + ", ".join(f"{k}={v:.4f}" for k, v in final_eval.items()))
        if checkpoint.latest(ckpt_dir) is None or checkpoint.latest(ckpt_dir).name != f"step-{self.step:08d}":
            checkpoint.save(ckpt_dir, self.step, self.acc.unwrap_model(self.model), self.optimizer, self.scheduler,
                            {"epoch": t.epochs}, self.acc, t.keep_checkpoints)
        return {"steps": self.step, "train": last_record, "eval": final_eval}
