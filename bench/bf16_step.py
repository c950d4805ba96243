"""Reproduce the bf16-autocast DPO step: one optimiser step at a tiny learning rate, in fp32 and in
bf16 autocast, on the packaged model, and how far each moves the policy's log-probs.

    python bench/bf16_step.py              # both precisions, each in its own process (~3 minutes on 2 cores)
    python bench/bf16_step.py --lr 0       # control: no update, the loss must stay log 2

Prints, per precision, the DPO loss before and after each of three steps and the mean change of the
chosen and rejected log-probs against the starting weights.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def one(dtype: str, lr: float, out: Path) -> dict:
    import torch

    from shiftalign.config import RunConfig, from_dict
    from shiftalign.data.batching import collate
    from shiftalign.models.load import load_policy
    from shiftalign.ops.logprobs import CompletionLogProbs
    from shiftalign.recipes.common import make_accelerator, prepare_items, reference_for, resolve_loss
    from shiftalign.train.loop import Task, Trainer

    rows = [{"prompt": f"what is {i}?", "chosen": f"a good answer {i}", "rejected": f"bad rude long answer {i} {i} {i}"}
            for i in range(8)]
    data = out / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = from_dict(RunConfig, {"recipe": "preference", "output_dir": str(out / dtype),
                                "model": {"path": "default", "dtype": dtype}, "data": {"train": str(data)},
                                "train": {"batch_size": 8, "micro_batch_size": 8, "lr": lr, "epochs": 3,
                                          "progress": False, "max_grad_norm": 0.0, "schedule": "constant"},
                                "loss": {"name": "dpo", "beta": 0.1}})
    acc = make_accelerator(cfg)
    spec, params = resolve_loss(cfg, ("paired",))
    model, tok = load_policy(cfg.model)
    items, _ = prepare_items(cfg, spec, tok, str(data), "train")
    ref = reference_for(cfg, spec, model, items, tok.pad_token_id, acc)
    trainer = Trainer(cfg, Task(CompletionLogProbs(model), spec, params, items, tok.pad_token_id, ref_train=ref), acc)
    losses = [trainer.train_step(list(range(8)))["loss"] for _ in range(3)]
    batch = collate(items, tok.pad_token_id)
    with torch.no_grad(), acc.autocast():
        moved = (acc.unwrap_model(trainer.model)(batch)["logps"] - ref[batch["index"]]).mean(0).tolist()
    return {"dtype": dtype, "lr": lr, "loss_before_steps_1_2_3": losses, "mean_logp_change_chosen_rejected": moved}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lr", type=float, default=5e-7)
    ap.add_argument("--one", choices=["float32", "bfloat16"])
    args = ap.parse_args()
    if args.one:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(one(args.one, args.lr, Path(tmp))))
        return
    for dtype in ("float32", "bfloat16"):  # one process each: accelerate's precision is fixed per process
        res = subprocess.run([sys.executable, __file__, "--one", dtype, "--lr", str(args.lr)], capture_output=True,
                             text=True, check=True)
        print(res.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
