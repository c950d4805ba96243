"""Reference-model log-probs, computed once and cached on disk.

The reference pi_ref of the DPO family is frozen, so its response log-probs ``(N, k)`` are computed
once, in inference mode with large batches, before training starts, and stored as safetensors
(no pickle) in a directory named by a fingerprint of the reference function (weights, model config,
settings). Each file there holds the rows of one computation, keyed by a hash of each example's token
ids; a later run reads every row it finds and computes only the examples missing, so runs that draw
different subsets of one data set (seeds, arms of an experiment) share the work. Files are written
atomically and never changed.
With LoRA the reference is the base model with the adapter disabled: no second copy in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..data.batching import collate
from ..data.tokenize import Tokenized
from ..io import atomic_path
from ..log import log
from ..ops.logprobs import branch_logps, unwrap_hf


def reference_context(model):
    """Context in which ``model`` computes as the reference (adapter disabled for PEFT models)."""
    return model.disable_adapter() if hasattr(model, "disable_adapter") else contextlib.nullcontext()


def fingerprint(model, settings: dict) -> str:
    """Of the reference function: base weights under their plain names (a LoRA-wrapped model and
    its base share a fingerprint), model config, and settings."""
    hf = unwrap_hf(model)
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps(hf.config.to_diff_dict(), sort_keys=True, default=str).encode())
    for name, t in sorted(hf.state_dict().items()):
        if "lora_" in name:  # the reference is the base model: adapter weights do not change it
            continue
        h.update(name.replace(".base_layer", "").encode())
        h.update(t.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()


def example_key(item: Tokenized) -> str:
    """What the reference's output for one example depends on besides the function: its token ids."""
    return hashlib.blake2b(json.dumps([item.prompt_ids, item.completion_ids]).encode(), digest_size=12).hexdigest()


def _stored_rows(directory: Path, k: int) -> dict[str, torch.Tensor]:
    rows: dict[str, torch.Tensor] = {}
    for f in sorted(directory.glob("*.safetensors")):
        with safe_open(str(f), "pt") as fh:
            keys = json.loads(fh.metadata()["keys"])
            logps = fh.get_tensor("logps")
        if logps.shape[1] == k:
            rows.update(zip(keys, logps))
    return rows


@torch.inference_mode()
def compute_logps(model, items: list[Tokenized], pad_id: int, batch_size: int, device, rank: int = 0,
                  world_size: int = 1) -> torch.Tensor:
    """``(N, k)`` reference log-probs; with several processes each computes a shard and they are summed."""
    k = len(items[0].completion_ids)
    out = torch.zeros(len(items), k, dtype=torch.float32, device=device)
    mine = sorted(range(rank, len(items), world_size), key=lambda i: items[i].row_length)
    was_training = model.training
    model.eval()
    with reference_context(model):
        for s in range(0, len(mine), batch_size):
            idx = mine[s:s + batch_size]
            batch = {key: v.to(device) for key, v in collate([items[i] for i in idx], pad_id).items()}
            out[torch.tensor(idx, device=device)] = branch_logps(model, batch)["logps"].float()
    model.train(was_training)
    if world_size > 1:
        torch.distributed.all_reduce(out)
    return out.cpu()


def cached_reference_logps(model, items, pad_id: int, batch_size: int, cache_dir, settings: dict, device,
                           rank: int = 0, world_size: int = 1) -> torch.Tensor:
    directory = Path(cache_dir) / fingerprint(model, settings)
    k = len(items[0].completion_ids)
    keys = [example_key(it) for it in items]
    stored = _stored_rows(directory, k) if directory.is_dir() else {}
    missing = [i for i, key in enumerate(keys) if key not in stored]
    fresh: dict[str, torch.Tensor] = {}
    if missing:
        t0 = time.perf_counter()
        logps = compute_logps(model, [items[i] for i in missing], pad_id, batch_size, device, rank, world_size)
        fresh = {keys[i]: row for i, row in zip(missing, logps)}
        log(f"reference log-probs: computed for {len(missing)} examples in {time.perf_counter() - t0:.1f}s"
            + (f", {len(items) - len(missing)} read from the cache" if len(missing) < len(items) else ""))
        if rank == 0:
            new_keys = sorted(fresh)
            name = hashlib.blake2b("".join(new_keys).encode(), digest_size=16).hexdigest()
            directory.mkdir(parents=True, exist_ok=True)
            with atomic_path(directory / f"{name}.safetensors") as tmp:
                save_file({"logps": torch.stack([fresh[key] for key in new_keys]).contiguous()}, str(tmp),
                          metadata={"keys": json.dumps(new_keys)})
    else:
        log(f"reference log-probs: all {len(items)} examples read from the cache {directory.name}")
    return torch.stack([fresh[key] if key in fresh else stored[key] for key in keys])


def frozen_reference(model_cfg, reference: str | None, device):
    """The frozen reference policy of a run whose policy is loaded with ``model_cfg``: the model at
    ``reference`` when given; else None for a LoRA policy (its base, adapter disabled, is the reference:
    see ``reference_context``); else the policy's starting weights, loaded from ``model_cfg.path``.
    Loaded with the policy's options (remote code, attention kernel), without an adapter; one copy is
    kept per process and reused while the files at that path are unchanged."""
    from dataclasses import replace

    from ..models.load import load_policy
    from ..models.packaged import resolve_model_path

    if reference is None and model_cfg.lora is not None:
        return None
    cfg = replace(model_cfg, path=reference or model_cfg.path, lora=None, gradient_checkpointing=False)
    root = Path(resolve_model_path(cfg.path))
    stamp = sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in root.glob("*")) if root.is_dir() else None
    key = (repr(cfg), stamp, str(device))
    global _FROZEN
    if _FROZEN is None or _FROZEN[0] != key:
        _FROZEN = None  # release the previous reference before loading the next
        model, _ = load_policy(cfg)
        _FROZEN = (key, model.eval().requires_grad_(False).to(device))
    return _FROZEN[1]


_FROZEN = None
