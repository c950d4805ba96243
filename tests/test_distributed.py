"""Two CPU processes (gloo) give the same step loss and gradients as one process on the same
global batch with non-uniform weights (Σw over the whole step, all processes); an evaluation with
fewer rows than processes gives the one-process numbers."""

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


def _two_processes(tiny_dir, data, out, loss, port, grads=True):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           str(Path(__file__).parent / "dist_worker.py"), tiny_dir, data, str(out), loss]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((out / "record.json").read_text())
    assert record["world"] == 2 and "MULTI_CPU" in record["type"]
    return record, load_file(str(out / "grads.safetensors")) if grads else None


def test_two_processes_equal_one(tiny_dir, tmp_path):
    rows = pref_rows(8)
    for r, w in zip(rows, [0.5, 3.0, 0.0, 1.0, 2.0, 0.25, 1.0, 4.0]):
        r["weight"] = w
    data = write_jsonl(tmp_path / "p.jsonl", rows)
    record, dist_grads = _two_processes(tiny_dir, data, tmp_path / "dist", "dpo", 29533)
    single, grads = grads_after_step(make_trainer(tiny_dir, data, tmp_path / "one", batch_size=8, micro_batch_size=2),
                                     list(range(8)))
    assert record["loss"] == pytest.approx(single["loss"], rel=1e-6)
    assert record["weight_sum"] == pytest.approx(11.75)
    assert set(dist_grads) == set(grads)
    for n in grads:
        assert torch.allclose(dist_grads[n], grads[n], atol=1e-7, rtol=1e-5), n


def test_kto_reference_point_is_the_same_with_two_processes(tiny_dir, tmp_path):
    # z0 is the mean mismatched log-ratio over the whole step: each process sees half the rows
    rows = [{"prompt": f"q {i}", "completion": f"answer {i} " * (1 + i % 3), "label": i % 3 != 0} for i in range(8)]
    data = write_jsonl(tmp_path / "u.jsonl", rows)
    record, dist_grads = _two_processes(tiny_dir, data, tmp_path / "dist", "kto", 29534)
    tr = make_trainer(tiny_dir, data, tmp_path / "one", loss="kto", batch_size=8, micro_batch_size=2)
    grads_after_step(tr, list(range(8)))
    single, grads = grads_after_step(tr, list(range(8)))  # the second step: policy != reference
    assert single["kl_reference_point"] > 0.1  # not clamped: a real estimate to compare
    assert record["kl_reference_point"] == pytest.approx(single["kl_reference_point"], rel=1e-5)
    assert record["loss"] == pytest.approx(single["loss"], rel=1e-5)
    for n in grads:
        assert torch.allclose(dist_grads[n], grads[n], atol=1e-7, rtol=1e-4), n


def test_evaluation_with_fewer_rows_than_processes(tiny_dir, tmp_path):
    data = write_jsonl(tmp_path / "p.jsonl", pref_rows(8))
    record, _ = _two_processes(tiny_dir, data, tmp_path / "dist", "dpo-eval", 29535, grads=False)
    tr = make_trainer(tiny_dir, data, tmp_path / "one", batch_size=8, micro_batch_size=2)
    tr.task.eval_items, tr.task.ref_eval = tr.task.train_items[:1], tr.task.ref_train
    single = tr.evaluate()
    assert set(record["eval"]) == set(single) and "eval/loss" in single
    for k, v in single.items():
        assert record["eval"][k] == pytest.approx(v, rel=1e-5, abs=1e-7), k
