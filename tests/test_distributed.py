"""Two CPU processes (gloo) give the same step loss and gradients as one process on the same
global batch with non-uniform weights (Σw over the whole step, all processes)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import pref_rows, write_jsonl
from helpers import grads_after_step, make_trainer


def test_two_processes_equal_one(tiny_dir, tmp_path):
    rows = pref_rows(8)
    for r, w in zip(rows, [0.5, 3.0, 0.0, 1.0, 2.0, 0.25, 1.0, 4.0]):
        r["weight"] = w
    data = write_jsonl(tmp_path / "p.jsonl", rows)
    out = tmp_path / "dist"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           str(Path(__file__).parent / "dist_worker.py"), tiny_dir, data, str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((out / "record.json").read_text())
    assert record["world"] == 2 and "MULTI_CPU" in record["type"]
    dist_grads = load_file(str(out / "grads.safetensors"))

    single, grads = grads_after_step(make_trainer(tiny_dir, data, tmp_path / "one", batch_size=8, micro_batch_size=2),
                                     list(range(8)))
    assert record["loss"] == pytest.approx(single["loss"], rel=1e-6)
    assert record["weight_sum"] == pytest.approx(11.75)
    assert set(dist_grads) == set(grads)
    for n in grads:
        assert torch.allclose(dist_grads[n], grads[n], atol=1e-7, rtol=1e-5), n
