"""Run by test_distributed under torchrun: one optimiser step on the same global batch (with KTO, a
second step, whose reference point z0 depends on the first); rank 0 saves the step record and the
gradients the optimiser saw. With ``dpo-eval``: an evaluation on a single row instead."""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))
from helpers import grads_after_step, make_trainer


def main():
    tiny_dir, data, out, loss = sys.argv[1:5]
    tr = make_trainer(tiny_dir, data, Path(out) / "run", loss=loss.removesuffix("-eval"), batch_size=8,
                      micro_batch_size=2)
    if loss == "dpo-eval":  # evaluation on one row: the second process has none
        tr.task.eval_items, tr.task.ref_eval = tr.task.train_items[:1], tr.task.ref_train
        if tr.acc.is_main_process:
            Path(out).mkdir(parents=True, exist_ok=True)
            (Path(out) / "record.json").write_text(json.dumps({"eval": tr.evaluate(), "world": tr.acc.num_processes,
                                                                "type": str(tr.acc.distributed_type)}))
        else:
            tr.evaluate()
        tr.acc.wait_for_everyone()
        return
    record, grads = grads_after_step(tr, list(range(8)))
    if loss == "kto":
        record, grads = grads_after_step(tr, list(range(8)))
    if tr.acc.is_main_process:
        Path(out).mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in grads.items()}, str(Path(out) / "grads.safetensors"))
        (Path(out) / "record.json").write_text(json.dumps({**record, "world": tr.acc.num_processes,
                                                            "type": str(tr.acc.distributed_type)}))
    tr.acc.wait_for_everyone()


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
    # left to the interpreter's exit, the process group's threads can still run: "terminate called without an
    # active exception" aborts the process
    torch.distributed.destroy_process_group()
