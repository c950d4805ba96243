"""``train.sharding: fsdp`` on two CPU processes (gloo, FSDP2): every parameter is sharded; an optimiser step on a
global batch with non-uniform weights equals one process's step on it (float32; gradients within rtol 1e-5 and
atol 1e-7, weights within rtol 1e-5 and atol 1e-6); a checkpoint resumes into a fresh sharded trainer; the saved
model is an ordinary Hugging Face directory; the rl recipe runs sharded. DeepSpeed, accelerate's own FSDP and LoRA
with fsdp are refused before anything is loaded."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from shiftalign.config import RunConfig, from_dict
from shiftalign.errors import ConfigError
from shiftalign.recipes.common import make_accelerator

from conftest import pref_rows, write_jsonl
from helpers import grads_after_step, make_trainer, params_of

CLIP = 0.5  # below the step's gradient norm: the clipping of sharded gradients is exercised
WEIGHTS = [0.5, 3.0, 0.0, 1.0, 2.0, 0.25, 1.0, 4.0]


def _torchrun(args: list[str], port: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port), *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]


def _close(a: dict, b: dict, rtol: float, atol: float) -> None:
    assert set(a) == set(b)
    for n in a:
        assert torch.allclose(a[n], b[n], rtol=rtol, atol=atol), (n, (a[n] - b[n]).abs().max().item())


def test_sharded_step_equals_one_process(tiny_dir, tmp_path):
    rows = pref_rows(8)
    for r, w in zip(rows, WEIGHTS):
        r["weight"] = w
    data = write_jsonl(tmp_path / "p.jsonl", rows)
    out = tmp_path / "dist"
    _torchrun([str(Path(__file__).parent / "fsdp_worker.py"), tiny_dir, data, str(out), str(CLIP)], 29541)

    # (a) really sharded: each parameter a DTensor split along dim 0, each process holding a part of it
    shards = json.loads((out / "shards.json").read_text())
    assert len(shards) == 2 and set(shards[0]) == set(shards[1])
    for name, first in shards[0].items():
        second = shards[1][name]
        assert first["type"] == second["type"] == "DTensor", name
        assert first["placements"] == second["placements"] == ["Shard(dim=0)"], name
        assert first["local"][0] < first["full"][0] and first["local"][0] + second["local"][0] == first["full"][0], name

    # (b) the step equals one process's on the same global batch
    one = make_trainer(tiny_dir, data, tmp_path / "one", batch_size=8, micro_batch_size=2, schedule="constant",
                       max_grad_norm=CLIP)
    one.task.eval_items, one.task.ref_eval = one.task.train_items[:3], one.task.ref_train
    from shiftalign.recipes.preference import token_kl_extra
    from shiftalign.train.reference import frozen_reference

    one.task.eval_extra = token_kl_extra(frozen_reference(one.cfg.model, None, one.acc.device))
    evaluation = one.evaluate()
    single, grads = grads_after_step(one, list(range(8)))
    step1 = params_of(one)
    one.train_step(list(range(8)))
    step2 = params_of(one)

    record = json.loads((out / "record.json").read_text())
    assert record["world"] == 2
    assert record["weight_sum"] == pytest.approx(11.75)
    assert single["grad_norm"] > 2 * CLIP
    for key in ("loss", "grad_norm", "weight_ess_fraction"):
        assert record[key] == pytest.approx(single[key], rel=1e-5), key
    assert set(record["eval"]) == set(evaluation) and "eval/kl_to_reference" in evaluation
    for k, v in evaluation.items():
        assert record["eval"][k] == pytest.approx(v, rel=1e-5, abs=1e-7), k
    _close(load_file(str(out / "grads.safetensors")), grads, rtol=1e-5, atol=1e-7)
    _close(load_file(str(out / "step1.safetensors")), step1, rtol=1e-5, atol=1e-6)
    _close(load_file(str(out / "step2.safetensors")), step2, rtol=1e-5, atol=1e-6)

    # a fresh sharded trainer resumed from the checkpoint of step 1 makes the same second step
    _close(load_file(str(out / "resumed.safetensors")), load_file(str(out / "step2.safetensors")), rtol=0, atol=1e-7)

    # the saved model: a Hugging Face directory one process loads, holding the weights after step 2
    from transformers import AutoModelForCausalLM

    saved = AutoModelForCausalLM.from_pretrained(out / "run" / "model").state_dict()
    _close(saved, {k.removeprefix("model."): v for k, v in load_file(str(out / "step2.safetensors")).items()},
           rtol=0, atol=0)


def test_rl_recipe_runs_sharded(tiny_dir, tmp_path):
    (tmp_path / "score.py").write_text("def f(prompts, responses):\n    return [r.count('o') / max(len(r), 1) "
                                       "for r in responses]\n")
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"id": f"q{i}", "prompt": f"what is {i}"} for i in range(8)])
    out = tmp_path / "rl"
    cfg = {"recipe": "rl", "output_dir": str(out), "model": {"path": tiny_dir}, "prompts": prompts,
           "algorithm": {"name": "ppo"}, "scorer": {"name": "python", "function": f"{tmp_path / 'score.py'}:f"},
           "sampling": {"n": 4, "max_new_tokens": 8, "temperature": 1.0}, "prompts_per_iteration": 2,
           "iterations": 2, "minibatch_size": 8,
           "train": {"lr": 1e-2, "progress": False, "save_every": 1, "keep_optimizer_state": True}}
    (tmp_path / "rl.yaml").write_text(yaml.safe_dump(cfg))
    _torchrun(["-m", "shiftalign.cli", "train", str(tmp_path / "rl.yaml"), "train.sharding=fsdp"], 29542)
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    last = out / "checkpoints" / "step-00000002"
    ckpt = load_file(str(last / "trainable.safetensors"))
    assert "value_head.weight" in ckpt  # the value head, in the root's shard group, checkpointed whole
    optimizer = torch.load(last / "optimizer.pt", weights_only=True)
    assert "value_head.weight" in optimizer["param_groups"][0]["params"]  # a sharded run's: keyed by name
    from transformers import AutoModelForCausalLM

    saved = AutoModelForCausalLM.from_pretrained(out / "model").state_dict()
    _close(saved, {k.removeprefix("model."): v for k, v in ckpt.items() if k.startswith("model.")}, rtol=0, atol=0)


def _cfg(tmp_path, **kw):
    return from_dict(RunConfig, {"output_dir": str(tmp_path / "out"), **kw})


def test_deepspeed_and_other_engines_are_refused(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="expected one of none, fsdp.*DeepSpeed is not supported.*gradient accum"):
        make_accelerator(_cfg(tmp_path, train={"sharding": "deepspeed"}))
    with pytest.raises(ConfigError, match="expected one of none, fsdp, got 'zero3'"):
        make_accelerator(_cfg(tmp_path, train={"sharding": "zero3"}))
    with pytest.raises(ConfigError, match="model.lora"):
        make_accelerator(_cfg(tmp_path, train={"sharding": "fsdp"}, model={"lora": {"r": 4}}))
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(ConfigError, match="ACCELERATE_USE_DEEPSPEED=true.*DeepSpeed is not supported.*none or fsdp"):
        make_accelerator(_cfg(tmp_path))
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(ConfigError, match="ACCELERATE_USE_FSDP=true.*train.sharding=fsdp"):
        make_accelerator(_cfg(tmp_path, train={"sharding": "fsdp"}))
    assert not (tmp_path / "out").exists()


def test_deepspeed_is_refused_by_the_cli(tiny_dir, prefs, tmp_path, capsys):
    from shiftalign.cli import main

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"recipe": "preference", "output_dir": str(tmp_path / "out"),
                                    "model": {"path": tiny_dir}, "data": {"train": prefs}}))
    assert main(["train", str(path), "train.sharding=deepspeed"]) == 2
    assert "DeepSpeed is not supported" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
