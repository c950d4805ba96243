"""Where the time of one shiftalign DPO step goes: torch.profiler over one optimiser step (8 pairs
of the throughput benchmark's data, packaged SmolLM2-135M-Instruct, fp32), after one warm-up step.

    python bench/dpo_profile.py          # writes bench/results/dpo_profile.txt
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from dpo_throughput import make_pairs

from shiftalign.config import RunConfig, from_dict
from shiftalign.losses import LOSSES
from shiftalign.models.load import load_policy
from shiftalign.ops.logprobs import CompletionLogProbs
from shiftalign.recipes.common import make_accelerator, prepare_items, reference_for
from shiftalign.train.loop import Task, Trainer


def dpo_trainer(prefix: str) -> Trainer:
    """A shiftalign DPO trainer on 16 of the throughput benchmark's pairs (8 per step), the packaged
    model in fp32, its reference log-probs computed: two steps' worth of data."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    data = work / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in make_pairs(16)))
    cfg = from_dict(RunConfig, {"output_dir": str(work / "run"), "cache_dir": str(work / "ref"),
                                "data": {"train": str(data), "max_length": 1024, "max_prompt_length": 512},
                                "train": {"batch_size": 8, "micro_batch_size": 8, "progress": False}})
    acc = make_accelerator(cfg)
    spec, params = LOSSES.get("dpo"), LOSSES.get("dpo").params()
    model, tok = load_policy(cfg.model)
    items, _ = prepare_items(cfg, spec, tok, str(data), "train")
    ref = reference_for(cfg, spec, model, items, tok.pad_token_id, acc)
    return Trainer(cfg, Task(CompletionLogProbs(model), spec, params, items, tok.pad_token_id, ref_train=ref), acc)


def main() -> None:
    trainer = dpo_trainer("dpo-profile-")
    trainer.train_step(list(range(8)))  # warm-up
    with torch.profiler.profile(record_shapes=False) as prof:
        trainer.train_step(list(range(8, 16)))
    table = prof.key_averages().table(sort_by="cpu_time_total", row_limit=25)
    out = Path("bench/results/dpo_profile.txt")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table)
    print(table)


if __name__ == "__main__":
    main()
