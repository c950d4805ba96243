"""Checkpoints: trainable weights (safetensors), optimiser and scheduler state, every process's RNG
state and the data position (the optimiser step; the data order is a pure function of seed and epoch).

A checkpoint is written into ``step-N.tmp`` and renamed to ``step-N`` only when complete, so a run
killed mid-write leaves the previous checkpoint intact. Resuming loads the latest complete one.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file


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
    if accelerator.is_main_process:
        save_file(trainable_state(module), str(tmp / "trainable.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
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
    state = load_file(str(path / "trainable.safetensors"))
    missing = set(trainable_state(module)) - set(state)
    if missing:
        raise RuntimeError(f"checkpoint {path} lacks trainable weights {sorted(missing)[:3]}...; was it made by another config?")
    module.load_state_dict(state, strict=False)
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    rank = accelerator.process_index
    rng_file = path / f"rng-{rank}.json"
    if rng_file.exists():
        _set_rng_state(json.loads(rng_file.read_text()), load_file(str(path / f"rng-{rank}.safetensors"))["torch"])
    return json.loads((path / "trainer_state.json").read_text())
