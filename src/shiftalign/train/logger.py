"""Metric logging: ``metrics.jsonl`` (one JSON object per logged step, with ``step`` and ``loss``),
plus TensorBoard / W&B through accelerate's trackers when ``train.report_to`` names them."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..io import write_text_atomic


class MetricsLog:
    def __init__(self, path: Path, accelerator, resume_step: int = 0):
        self.path, self.acc = path, accelerator
        if accelerator.is_main_process:
            kept = []
            if resume_step and path.exists():  # drop lines past the checkpoint we resume from
                kept = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= resume_step]
            write_text_atomic(path, "".join(ln + "\n" for ln in kept))

    def log(self, record: dict) -> None:
        if not self.acc.is_main_process:
            return
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(clean) + "\n")
        numeric = {k: v for k, v in clean.items() if isinstance(v, (int, float)) and k != "step"}
        if self.acc.trackers:
            self.acc.log(numeric, step=record["step"])
