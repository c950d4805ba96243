"""Run by test_fsdp under torchrun (two CPU processes, gloo) with ``train.sharding: fsdp``, on one global batch of
8 rows: an evaluation (3 rows, one per forward: the processes run different numbers of forwards), one optimiser
step, a checkpoint, a second step, the second step again by a fresh trainer resumed from the checkpoint, and the
final model saved. Rank 0 writes to OUT: ``shards.json`` (each parameter's type, placements and shapes on each
process), ``record.json`` (the first step's record, the evaluation), ``grads.safetensors`` (the first step's
gradients as the optimiser saw them, gathered), ``step1`` / ``step2`` / ``resumed.safetensors`` (the weights,
gathered) and ``run/model`` (the saved model)."""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))
from helpers import grads_after_step, make_trainer

STEP = list(range(8))


def main():
    from accelerate.utils import gather_object
    from torch.distributed.tensor import DTensor

    from shiftalign.models.load import load_tokenizer
    from shiftalign.recipes.common import TrainResult, save_final
    from shiftalign.recipes.preference import token_kl_extra
    from shiftalign.train import checkpoint
    from shiftalign.train.optim import resume_latest
    from shiftalign.train.reference import frozen_reference
    from shiftalign.train.sharding import full_state_dict

    tiny_dir, data, out, clip = sys.argv[1], sys.argv[2], Path(sys.argv[3]), float(sys.argv[4])
    train = dict(batch_size=8, micro_batch_size=2, schedule="constant", max_grad_norm=clip, sharding="fsdp")
    tr = make_trainer(tiny_dir, data, out / "run", **train)
    acc = tr.acc
    shards = gather_object([{n: {"type": type(p).__name__, "placements": [repr(x) for x in getattr(p, "placements", ())],
                                 "local": list(p.to_local().shape if isinstance(p, DTensor) else p.shape),
                                 "full": list(p.shape)} for n, p in tr.model.named_parameters()}])

    tr.task.eval_items, tr.task.ref_eval = tr.task.train_items[:3], tr.task.ref_train
    tr.task.eval_extra = token_kl_extra(frozen_reference(tr.cfg.model, None, acc.device))
    tr.cfg.train.reference_batch_size = 1  # process 0 runs two forwards, process 1 one
    evaluation = tr.evaluate()

    record, grads = grads_after_step(tr, STEP)
    grads = {n: g.full_tensor() for n, g in grads.items()}
    step1 = full_state_dict(tr.model)
    checkpoint.save(out / "ckpt", 1, tr.model, tr.optimizer, tr.scheduler, {}, acc)
    tr.train_step(STEP)
    step2 = full_state_dict(tr.model)

    fresh = make_trainer(tiny_dir, data, out / "fresh", **train)
    assert resume_latest(out / "ckpt", fresh.model, fresh.optimizer, fresh.scheduler, acc)["step"] == 1
    fresh.train_step(STEP)
    resumed = full_state_dict(fresh.model)

    save_final(tr.cfg, acc, tr.model.model, load_tokenizer(tiny_dir), TrainResult(model="", steps=2, train=record))
    if acc.is_main_process:
        (out / "shards.json").write_text(json.dumps(shards))
        (out / "record.json").write_text(json.dumps({**record, "eval": evaluation, "world": acc.num_processes}))
        for name, tensors in [("grads", grads), ("step1", step1), ("step2", step2), ("resumed", resumed)]:
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(out / f"{name}.safetensors"))
    acc.wait_for_everyone()


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
    # left to the interpreter's exit, the process group's threads can still run: "terminate called without an
    # active exception" aborts the process
    torch.distributed.destroy_process_group()
