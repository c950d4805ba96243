"""Checkpoints: trainable weights (safetensors), optimiser and scheduler state, every process's RNG
state and the data position (the optimiser step; the data order is a pure function of seed and epoch).

A checkpoint is written into ``step-N.tmp`` and renamed to ``step-N`` only when complete, so a run
killed mid-write leaves the previous checkpoint intact. Resuming loads the latest complete one.

A sharded model (``train.sharding: fsdp``) is checkpointed whole: its weights, gathered, in the same file as an
unsharded model's, and its optimiser state gathered and keyed by parameter name (module ``train.sharding``); resuming
reads both on the main process and loads them into every process's shards.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from . import sharding


def trainable_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().to("cpu").clone().contiguous() for n, p in module.named_parameters() if p.requires_grad}


def _rng_state() -> dict:
    np_state = np.random.get_state()
    return {"python": random.getstate(), "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]]}


def _set_rng_state(state: dict, torch_state: torch.Tensor) -> None:
    v, internal, gauss = state["python"]
    random.setstate((v, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), *n[2:]))
    torch.set_rng_state(torch_state)


def latest(checkpoint_dir: Path) -> Path | None:
    done = sorted(p for p in checkpoint_dir.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp")
                  and (p / "trainer_state.json").exists())
    return done[-1] if done else None


def save(checkpoint_dir: Path, step: int, module, optimizer, scheduler, trainer_state: dict, accelerator,
         keep: int = 2) -> Path:
    final = checkpoint_dir / f"step-{step:08d}"
    tmp = checkpoint_dir / f"step-{step:08d}.tmp"
    rank = accelerator.process_index
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    save_file({"torch": torch.get_rng_state()}, str(tmp / f"rng-{rank}.safetensors"))
    (tmp / f"rng-{rank}.json").write_text(json.dumps(_rng_state()))
    weights = sharding.full_state_dict(module)  # every process: a sharded model's weights are gathered
    if weights is not None:
        weights = {n: weights[n] for n, p in module.named_parameters() if p.requires_grad and n in weights}
        optimizer_state = sharding.full_optimizer_state(module, optimizer)
    if accelerator.is_main_process:
        save_file(trainable_state(module) if weights is None else weights, str(tmp / "trainable.safetensors"))
        torch.save(optimizer.state_dict() if weights is None else optimizer_state, tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        (tmp / "trainer_state.json").write_text(json.dumps({"step": step, **trainer_state}, indent=2))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in sorted(p for p in checkpoint_dir.glob("step-*") if not p.name.endswith(".tmp"))[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def remove_all(checkpoint_dir: Path) -> None:
    """Delete every checkpoint of a finished run (its final model is saved separately)."""
    shutil.rmtree(checkpoint_dir, ignore_errors=True)


def load(path: Path, module, optimizer, scheduler, accelerator) -> dict:
    with safe_open(str(path / "trainable.safetensors"), "pt") as f:
        stored = set(f.keys())
    missing = {n for n, p in module.named_parameters() if p.requires_grad} - stored
    if missing:
        raise RuntimeError(f"checkpoint {path} lacks trainable weights {sorted(missing)[:3]}...; was it made by another config?")
    if sharding.is_sharded(module):  # read by the main process, sent to the shards of every process
        main = accelerator.is_main_process
        sharding.load_full_state(module, optimizer, load_file(str(path / "trainable.safetensors")) if main else {},
                                 torch.load(path / "optimizer.pt", weights_only=True) if main else {})
    else:
        module.load_state_dict(load_file(str(path / "trainable.safetensors")), strict=False)
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    rank = accelerator.process_index
    rng_file = path / f"rng-{rank}.json"
    if rng_file.exists():
        _set_rng_state(json.loads(rng_file.read_text()), load_file(str(path / f"rng-{rank}.safetensors"))["torch"])
    return json.loads((path / "trainer_state.json").read_text())
