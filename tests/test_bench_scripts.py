"""Bench scripts that the suite can check: bench/gpu_smoke.sh says "no CUDA" and exits 0 on a CPU machine,
and every command it would run on a GPU machine names config keys that exist; bench/rl_iteration.py
reports the parts of an RL iteration; bench/agreement_by_round.py and bench/cue_drift.py read an experiment's
output."""

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


def test_agreement_by_round_splits_label_accuracy_by_whether_every_head_agrees(tmp_path, capsys):
    """bench/agreement_by_round.py on hand-made pseudo-pairs labelled by 3 heads, gold VADER."""
    import importlib.util
    import json

    good, bad = "I love this, it is wonderful and great.", "This is terrible, awful and sad."
    def pair(chosen, rejected, heads):  # heads: each head's (chosen, rejected) scores
        return {"prompt": "Say something.", "chosen": chosen, "rejected": rejected,
                "provenance": {"model_scores": [[c for c, _ in heads], [r for _, r in heads]]}}
    rounds = {1: [pair(good, bad, [(1, 0)] * 3), pair(good, bad, [(1, 0)] * 3), pair(bad, good, [(1, 0)] * 3),
                  pair(good, bad, [(1, 0), (1, 0), (0, 1)])],
              2: [pair(bad, good, [(1, 0), (0, 1), (1, 0)]), pair(good, bad, [(1, 0)] * 3)]}
    for r, rows in rounds.items():
        (tmp_path / "arm" / f"round-{r}" / "labels").mkdir(parents=True)
        (tmp_path / "arm" / f"round-{r}" / "labels" / "pseudo_pairs.jsonl").write_text(
            "".join(json.dumps(x) + "\n" for x in rows))
    spec = importlib.util.spec_from_file_location("agreement_by_round", ROOT / "bench" / "agreement_by_round.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    r1, r2 = bench.main([str(tmp_path / "arm"), "--gold", "vader", "--out", str(tmp_path / "a.json")])
    assert (r1["round"], r1["head_agreement"], r1["accuracy_all"]) == (1, 0.75, 0.75)
    assert (r1["accuracy_unanimous"], r1["decided_unanimous"], r1["accuracy_split"]) == (pytest.approx(2 / 3), 3, 1.0)
    assert (r2["head_agreement"], r2["accuracy_unanimous"], r2["accuracy_split"]) == (0.5, 1.0, 0.0)
    assert "| vader | arm | 2 | 0.500 | 0.500 (2) | 1.000 (1) | 0.000 (1) |" in capsys.readouterr().out
    assert json.loads((tmp_path / "a.json").read_text()) == [r1, r2]


def test_cue_drift_reads_each_evaluated_policy_share_of_the_cue(tmp_path, capsys):
    """bench/cue_drift.py on two evaluation.json files (frontier points and final policies) with samples."""
    import importlib.util
    import json

    def write(folder, policies):
        (folder / "samples" / "arm step 1").mkdir(parents=True)
        report = {"policies": {n: {"gold_mean": g, "kl_per_prompt": kl} for n, (g, kl, _) in policies.items()}}
        (folder / "evaluation.json").write_text(json.dumps(report))
        for name, (_, _, completions) in policies.items():
            (folder / "samples" / f"{name}.jsonl").write_text("".join(json.dumps({"completion": c}) + "\n"
                                                                       for c in completions))
    write(tmp_path / "points", {"arm step 1/2": (0.5, [1.0, 3.0], ["a\nb", "a", "b", "c"])})
    write(tmp_path / "evaluation", {"arm": (0.7, [4.0], ["1. a\n2. b", "x\ny"]), "initial": (0.4, [0.0], ["a"])})
    spec = importlib.util.spec_from_file_location("cue_drift", ROOT / "bench" / "cue_drift.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.main([str(tmp_path), "--out", str(tmp_path / "c.json")])
    assert [(r["policy"], r["samples"], r["cue_share"], r["gold"], r["kl"]) for r in rows] == [
        ("arm", 2, 1.0, 0.7, 4.0), ("arm step 1/2", 4, 0.25, 0.5, 2.0), ("initial", 1, 0.0, 0.4, 0.0)]
    assert "| arm step 1/2 | 4 | 0.250 | 0.500 | 2.00 |" in capsys.readouterr().out
    assert json.loads((tmp_path / "c.json").read_text()) == rows
