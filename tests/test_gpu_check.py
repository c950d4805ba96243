"""bench/gpu_check.py on tiny shapes on a CPU: the command as the GPU machine runs it reports numbers for every
part and leaves a valid JSON summary; a part made to fail is recorded and the parts after it still run."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_check.py"
OURS = ("dpo_135m", "dpo_1b", "rl", "sampling", "kl")


def load_bench():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_every_part_reports_numbers_and_the_summary_file_is_valid(tmp_path):
    out = tmp_path / "check.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "CUDA_VISIBLE_DEVICES": ""}
    env.pop("GPU_CHECK_FAIL", None)
    res = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--no-trl", "--out", str(out)], capture_output=True,
                         text=True, timeout=300, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    printed = json.loads(res.stdout.strip().splitlines()[-1])  # the summary is the last line on stdout
    assert json.loads(out.read_text()) == printed
    parts = printed["parts"]
    assert set(parts) == set(OURS) | {"trl_dpo"}
    for name in OURS:
        assert "error" not in parts[name], (name, parts[name])
    for name in ("dpo_135m", "dpo_1b"):
        p = parts[name]
        assert p["steps"] == 2 and p["steps_measured"] == 1 and p["median_step_seconds"] > 0
        assert p["tokens_per_step"] == 4 * (8 + 2 * 9) and p["tokens_per_s"] > 0
        assert p["precision"] == "no" and p["peak_gpu_memory_gb"] is None  # a CPU: fp32, no CUDA memory
    assert parts["rl"]["median_iteration_seconds"] > 0 and parts["rl"]["iterations_measured"] == 1
    assert parts["sampling"]["tokens"] > 0 and parts["sampling"]["tokens_per_s"] > 0
    assert parts["kl"]["source"] == "the sampling part's samples" and parts["kl"]["samples"] == 4 * 2
    assert parts["kl"]["computed_on"] == ["cpu"] and parts["kl"]["seconds"] > 0
    assert parts["trl_dpo"]["skipped"] in ("--no-trl", "trl not installed", "datasets not installed")
    assert printed["models"]["1b"]["parameters"] > printed["models"]["135m"]["parameters"]
    assert printed["device"].startswith("cpu") and printed["total_seconds"] > 0


def test_a_failing_part_is_recorded_and_the_next_parts_still_run(tmp_path, monkeypatch):
    bench = load_bench()
    monkeypatch.setenv(bench.FAIL_ENV, "sampling")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    out = tmp_path / "check.json"
    summary = bench.main(["--tiny", "--parts", "sampling,kl", "--out", str(out), "--workdir", str(tmp_path / "w")])
    assert json.loads(out.read_text()) == json.loads(json.dumps(summary))
    assert summary["parts"]["sampling"]["error"] == "InjectedFailure: failure injected into sampling by GPU_CHECK_FAIL"
    kl = summary["parts"]["kl"]
    assert "error" not in kl and kl["seconds"] > 0
    assert kl["source"].startswith("random token ids")  # no samples from the failed part: random completions
