"""Optimiser, learning-rate schedule, one optimiser step and resuming: shared by the offline loop
(``train.loop``) and the online RL loop (``train.online``)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ConfigError
from ..log import log
from . import checkpoint

SCHEDULES = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}


def make_optimizer(module: torch.nn.Module, lr: float, weight_decay: float = 0.0,
                   betas: tuple[float, float] = (0.9, 0.999), schedule: str = "constant", warmup_steps: int = 0,
                   total_steps: int | None = None, where: str = "train.schedule"):
    """AdamW over the trainable parameters of ``module`` and its ``transformers`` schedule (``where``
    names the schedule's config key in the error for an unknown one)."""
    from transformers import get_scheduler

    if schedule not in SCHEDULES:
        raise ConfigError(f"{where}: expected one of {', '.join(SCHEDULES)}, got {schedule!r}")
    params = [p for p in module.parameters() if p.requires_grad]
    # The fused kernel updates all parameters in one pass, several times faster than the per-tensor loop on a CPU
    # (BENCHMARKS.md, "An RL iteration: the decode loop, ..."); it is also what transformers' Trainer, and so TRL,
    # uses by default.
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    optimizer = torch.optim.AdamW(params, lr=lr, betas=tuple(betas), weight_decay=weight_decay, fused=fused or None)
    scheduler = get_scheduler(SCHEDULES[schedule], optimizer, num_warmup_steps=warmup_steps,
                              num_training_steps=total_steps)
    return optimizer, scheduler


def optimizer_step(acc, model, optimizer, scheduler, max_grad_norm: float) -> tuple[float | None, float]:
    """Clip (when ``max_grad_norm`` > 0), step, advance the schedule, zero the gradients.
    Returns (gradient norm before clipping or None, the learning rate this step used)."""
    grad_norm = None
    if max_grad_norm > 0:
        grad_norm = float(acc.clip_grad_norm_(model.parameters(), max_grad_norm))
    lr = scheduler.get_last_lr()[0]
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm, lr


def resume_latest(checkpoint_dir: Path, module, optimizer, scheduler, acc, resume: bool = True) -> dict | None:
    """Load the latest complete checkpoint under ``checkpoint_dir`` into the module, optimiser and
    schedule; its trainer state (``step`` and what the loop stored), or None when there is none.
    ``resume`` false (``train.resume``) starts over: earlier checkpoints are removed, so that neither the
    count of checkpoints kept nor a later resume mixes them with the new run's."""
    if not resume:
        if acc.is_main_process and checkpoint.latest(checkpoint_dir) is not None:
            log(f"train.resume is false: starting over; the checkpoints in {checkpoint_dir} are removed")
        if acc.is_main_process:
            checkpoint.remove_all(checkpoint_dir)
        acc.wait_for_everyone()
        return None
    last = checkpoint.latest(checkpoint_dir)
    if last is None:
        return None
    state = checkpoint.load(last, module, optimizer, scheduler, acc)
    log(f"resuming from {last} (step {state['step']})")
    return state
