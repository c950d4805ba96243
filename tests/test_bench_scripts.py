"""Bench scripts that the suite can check: bench/gpu_smoke.sh says "no CUDA" and exits 0 on a CPU machine,
and every command it would run on a GPU machine names config keys that exist; bench/rl_iteration.py
reports the parts of an RL iteration."""

import os
import shlex
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_smoke.sh"


def run(*args, **env):
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def test_without_cuda_it_says_so_and_exits_zero():
    res = run(CUDA_VISIBLE_DEVICES="")
    assert res.returncode == 0, res.stderr
    if not torch.cuda.is_available():
        assert "no CUDA" in res.stdout


def test_every_command_resolves_its_config(capsys):
    from shiftalign.cli import main
    from shiftalign.config import load_config
    from shiftalign.rollout.sample import SampleConfig

    res = run("--print", GPU_SMOKE_OUT="out")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    recipes = [shlex.split(line) for line in lines if " train configs/" in line]
    assert [r[r.index("train") + 1] for r in recipes] == ["configs/sft.yaml", "configs/reward.yaml", "configs/dpo.yaml",
                                                          "configs/dpo.yaml", "configs/rl.yaml"]
    for argv in recipes:
        i = argv.index("train")
        overrides = argv[i + 2:]
        assert "model.dtype=bf16" in overrides
        assert main(["config", str(ROOT / argv[i + 1]), *overrides]) == 0
        assert "dtype: bf16" in capsys.readouterr().out
    (sample,) = [shlex.split(line) for line in lines if " sample configs/" in line]
    i = sample.index("sample")
    cfg = load_config(str(ROOT / sample[i + 1]), sample[i + 2:], SampleConfig)
    assert cfg.backend in ("hf", "vllm") and cfg.policy.path == "out/dpo/model"
    assert any("bench/dpo_throughput.py" in line for line in lines)


def test_rl_iteration_bench_reports_each_part(tmp_path, tiny_dir):
    """bench/rl_iteration.py on a tiny model: the median of each part of an RL iteration."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("rl_iteration", ROOT / "bench" / "rl_iteration.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    res = bench.main(["--iterations", "2", "--model", tiny_dir, "--out", str(tmp_path / "r.json")])
    assert json.loads((tmp_path / "r.json").read_text()) == res
    assert all(res[p] >= 0 for p in bench.PARTS) and res["iterations_measured"] == 1
    assert res["iteration"] == pytest.approx(sum(res[p] for p in bench.PARTS))
