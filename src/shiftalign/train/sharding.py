"""Sharded data parallelism, ``train.sharding: fsdp``: each parameter, its gradient and its optimiser state are
split over the processes, with PyTorch's FSDP2, ``torch.distributed.fsdp.fully_shard``, applied as the PyTorch
documentation's FSDP2 tutorial and torchtitan apply it: to each transformer decoder layer, then to the root
module, on a one-dimensional device mesh of all processes. The same code shards on GPUs (NCCL) and on CPUs (gloo).

The weighted reduction of ``train.loop`` is unchanged. FSDP2 reduce-scatters each gradient averaged over the
processes, as DDP all-reduces it averaged, so the loop's factor of the number of processes turns the average back
into a sum; the gradients are DTensors sharded like their parameters, and the division by the step's sum of
weights, the clipping (accelerate's ``clip_grad_norm_``, which computes the norm over every shard) and the fused
AdamW step work shard by shard. Every micro-batch is reduce-scattered (accelerate's ``no_sync`` does nothing to a
module without DDP's ``no_sync``): gradients accumulate in their shards, and no full gradient is kept.

Outside a forward or backward pass every parameter is sharded (the root reshards after its forward too), so the
optimiser, the loop's gradient division and the checkpoints always see the sharded parameters. Each forward pass
gathers parameters from every process, so training forwards come in equal numbers on every process (the loop's
micro-batches do). Evaluation and sampling do not (a process may have fewer rows; sampling stops when its own
responses end): they run inside :func:`call_gathered`, which gathers every parameter once, keeps them for the
call (each process then holds the whole model, as it would unsharded) and shards them again after it; code in it
may also call parts of the model directly (the evaluation's KL to the reference, the sampler).

Saving gathers the full state dict on the CPU of the main process
(``torch.distributed.checkpoint.state_dict.get_model_state_dict`` with ``full_state_dict`` and ``cpu_offload``),
so a saved model is an ordinary Hugging Face directory that one process loads. A checkpoint holds full tensors
keyed by name, the optimiser state too (``get_optimizer_state_dict``); resuming reads it on the main process and
broadcasts it into the shards (``set_model_state_dict`` / ``set_optimizer_state_dict`` with
``broadcast_from_rank0``), so a sharded run resumes like any other.

Not supported, and refused by :func:`check` before anything is loaded: LoRA with fsdp (the adapter is merged into
the full weights at the end, and the reference is the base with the adapter off), DeepSpeed (the loop owns
gradient accumulation and the division by the step's sum of weights, which DeepSpeed's engine takes over), and
accelerate's own FSDP, turned on by ``accelerate launch`` options (its plugin wraps the model by rules of its own,
and under bf16 its mixed-precision policy reduce-scatters the gradients in bf16, which the weighted sums would not
survive exactly; here bf16 autocast computes, and parameters and gradients stay float32, as unsharded). With one
process there is nothing to shard: the model trains unsharded.

    torchrun --nproc_per_node 8 -m shiftalign.cli train configs/dpo.yaml train.sharding=fsdp
"""

from __future__ import annotations

import os
import types

import torch

from ..errors import ConfigError
from ..log import log

ENGINES = ("none", "fsdp")
_NO_DEEPSPEED = ("DeepSpeed is not supported: the training loop owns gradient accumulation and divides each step's "
                 "gradients by the step's sum of weights, which DeepSpeed's engine would take over")


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def check(cfg) -> None:
    """Refuse a data-parallel engine the loop cannot keep exact with: ``cfg`` is any recipe's config."""
    engine = cfg.train.sharding
    if engine not in ENGINES:
        why = f"; {_NO_DEEPSPEED}" if "deepspeed" in str(engine).lower() else ""
        raise ConfigError(f"train.sharding: expected one of {', '.join(ENGINES)}, got {engine!r}{why}")
    if _env_true("ACCELERATE_USE_DEEPSPEED"):
        raise ConfigError(f"accelerate is set to use DeepSpeed (ACCELERATE_USE_DEEPSPEED=true): {_NO_DEEPSPEED}; "
                          f"launch without it and choose train.sharding: {' or '.join(ENGINES)}")
    if _env_true("ACCELERATE_USE_FSDP"):
        raise ConfigError("accelerate is set to use its own FSDP (ACCELERATE_USE_FSDP=true, from an `accelerate "
                          "launch` option or config): launch without it and set train.sharding=fsdp, which shards the "
                          "model in the training loop")
    if engine == "fsdp":
        try:
            from torch.distributed.fsdp import fully_shard  # noqa: F401
        except ImportError:
            raise ConfigError(f"train.sharding: fsdp needs torch >= 2.6 (torch.distributed.fsdp.fully_shard); this is "
                              f"torch {torch.__version__}") from None
    if engine == "fsdp" and cfg.model.lora is not None:
        raise ConfigError("train.sharding: fsdp does not support model.lora (the adapter is merged into the full "
                          "weights and the reference is the base with the adapter off); train LoRA with "
                          "train.sharding: none")


def prepare(module: torch.nn.Module, acc, engine: str) -> torch.nn.Module:
    """``module`` ready to train on ``acc``: sharded with ``fsdp`` over several processes, else accelerate's
    (DDP over several processes). Build the optimiser afterwards, over the returned module's parameters."""
    if engine == "fsdp" and acc.num_processes > 1:
        return shard(module.to(acc.device), acc.device.type, acc.num_processes)
    if engine == "fsdp":
        log("train.sharding: fsdp with one process: nothing to shard; the model trains unsharded")
    return acc.prepare(module)


def _layer_classes(module: torch.nn.Module) -> set[str]:
    """The class names of the decoder layers: what Hugging Face models declare in ``_no_split_modules``."""
    names: set[str] = set()
    for sub in module.modules():
        names.update(getattr(sub, "_no_split_modules", None) or [])
    return names


def _call(self, fn, *args, **kwargs):
    # Registered as a forward method of the root, which FSDP gathers before it; the layers are gathered here, and
    # nothing (the root neither, under a forward nested in the call) reshards before the call ends.
    from torch.distributed.fsdp import FSDPModule

    parts = [m for m in self.modules() if isinstance(m, FSDPModule)]
    for m in parts:
        m.set_reshard_after_forward(False, recurse=False)
        m.unshard()
    try:
        return fn(*args, **kwargs)
    finally:
        for m in parts:
            m.set_reshard_after_forward(True, recurse=False)
            m.reshard()


def shard(module: torch.nn.Module, device_type: str, world: int) -> torch.nn.Module:
    """``fully_shard`` each decoder layer, then ``module`` (the root: every other parameter), over ``world``
    processes on ``device_type`` devices; in place, and returned."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    mesh = init_device_mesh(device_type, (world,))
    classes = _layer_classes(module)
    layers = [sub for sub in module.modules() if sub is not module and type(sub).__name__ in classes]
    if not layers:
        log(f"train.sharding: {type(module).__name__} declares no decoder layers; its parameters form one group")
    for layer in layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(module, mesh=mesh, reshard_after_forward=True)
    module.call_gathered = types.MethodType(_call, module)
    register_fsdp_forward_method(module, "call_gathered")
    return module


def call_gathered(module: torch.nn.Module, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` with every parameter of the sharded root ``module`` gathered for the whole call, so
    that the forwards in it need no other process; every process must call it. Unsharded: a plain call."""
    gathered = getattr(module, "call_gathered", None)
    return fn(*args, **kwargs) if gathered is None else gathered(fn, *args, **kwargs)


def is_sharded(module: torch.nn.Module) -> bool:
    if not torch.distributed.is_available():
        return False
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in module.parameters())


def _options(**kw):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kw)


def full_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """The whole state dict of a sharded ``module`` (or a part of one), on the main process's CPU ({} on the
    others); None when ``module`` is not sharded. Every process must call it: it gathers."""
    if not is_sharded(module):
        return None
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(module, options=_options(cpu_offload=True))


def full_optimizer_state(module: torch.nn.Module, optimizer) -> dict:
    """The optimiser's whole state keyed by parameter name, on the main process's CPU ({} on the others)."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(module, optimizer, options=_options(cpu_offload=True))


def load_full_state(module: torch.nn.Module, optimizer, weights: dict, optimizer_state: dict) -> None:
    """Load full weights (any subset of the parameters) and optimiser state, read by the main process only (the
    others pass {}), into the shards of every process."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    set_model_state_dict(module, weights, options=_options(broadcast_from_rank0=True, strict=False))
    set_optimizer_state_dict(module, optimizer, optimizer_state, options=_options(broadcast_from_rank0=True))
