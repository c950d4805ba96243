"""End to end on the packaged SmolLM2-135M-Instruct (slow: minutes on a CPU; `make test-slow`).

Samples from the policy (target), fits density-ratio weights between the bundled preference pairs
and the samples, trains weighted DPO, and checks the weights and diagnostics reached the metrics.
"""

import json
from pathlib import Path

import pytest

from shiftalign.cli import main

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def test_sample_weights_weighted_dpo(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("SHIFTALIGN_CACHE")  # reuse the converted packaged model
    s, w, r = tmp_path / "samples.jsonl", tmp_path / "weights", tmp_path / "dpo"
    assert main(["sample", "configs/sample.yaml", f"output={s}", "sampling.max_new_tokens=40", "progress=false"]) == 0
    assert len(s.read_text().splitlines()) == 48
    assert main(["weights", "fit", "configs/weights.yaml", f"target={s}", f"output_dir={w}"]) == 0
    diag = json.loads((w / "diagnostics.json").read_text())
    assert 0 < diag["ess_fraction"] <= 1 and "domain_auc_after" in diag
    assert main(["train", "configs/dpo_weighted.yaml", f"output_dir={r}", f"data.weights={w / 'weights.jsonl'}",
                 "train.progress=false", f"cache_dir={tmp_path / 'ref'}"]) == 0
    recs = [json.loads(l) for l in (r / "metrics.jsonl").read_text().splitlines()]
    steps = [x for x in recs if "weight_ess_fraction" in x]
    assert len(steps) == 3 and all(0 < x["weight_ess_fraction"] <= 1 for x in steps)
    assert recs[-1]["eval/accuracy"] >= 0


def test_reward_model_then_two_rounds_of_iterate(tmp_path, monkeypatch):
    """Reward recipe on the bundled pairs, then `iterate` for two rounds labelled by that reward model."""
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("SHIFTALIGN_CACHE")
    rm = tmp_path / "rm"
    assert main(["train", "configs/reward.yaml", f"output_dir={rm}", "train.epochs=1", "train.progress=false"]) == 0
    it = tmp_path / "it"
    assert main(["iterate", "configs/iterate.yaml", f"output_dir={it}", f"label.reward_model.models=[{rm / 'model'}]",
                 "sample.sampling.n=2", "sample.sampling.max_new_tokens=24", "sample.progress=false",
                 "train.train.progress=false", f"train.cache_dir={tmp_path / 'ref'}"]) == 0
    rounds = [json.loads(l) for l in (it / "rounds.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rounds] == [1, 2]
    assert all(r["labels"]["pairs"] > 0 for r in rounds)
    assert (it / "round-2" / "train" / "model" / "model.safetensors").exists()


def test_quickstart_experiment_killed_mid_stage_continues(tmp_path):
    """The quick-start experiment on the packaged model (reduced sizes), killed with SIGKILL after its
    last arm (source-only DPO trained as long as the method arm) wrote its first checkpoint; the rerun
    skips the nine finished stages, resumes that arm from its checkpoint and writes the report, whose
    verdict comes first and reads the method arm against its matched baseline."""
    import os
    import signal
    import subprocess
    import sys
    import time

    shift = ROOT / "data/shift/default"
    for name, src, n in (("src", "source_pairs_vader", 16), ("held", "heldout_pairs_vader", 8),
                         ("tgt", "target_prompts", 8), ("ev", "target_eval_prompts", 4)):
        (tmp_path / f"{name}.jsonl").write_text("\n".join((shift / f"{src}.jsonl").read_text().splitlines()[:n]) + "\n")
    out = tmp_path / "exp"
    cmd = [sys.executable, "-m", "shiftalign.cli", "experiment", "configs/experiment.yaml", f"output_dir={out}",
           f"data.source_pairs={tmp_path / 'src.jsonl'}", f"data.heldout_pairs={tmp_path / 'held.jsonl'}",
           f"data.target_prompts={tmp_path / 'tgt.jsonl'}", f"data.eval_prompts={tmp_path / 'ev.jsonl'}",
           "progress=false", "dpo_train.save_every=1", "dpo_train.batch_size=4", "dpo_train.micro_batch_size=4",
           "policy_sampling.n=2", "policy_sampling.max_new_tokens=16", "evaluate.sampling.max_new_tokens=16",
           "evaluate.bootstrap=200"]
    env = {k: v for k, v in os.environ.items() if k != "SHIFTALIGN_CACHE"}  # reuse the converted model
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    ckpt = out / "dpo_source_long" / "checkpoints"
    deadline = time.monotonic() + 900
    while proc.poll() is None and not (ckpt.exists() and any(ckpt.glob("step-*/trainer_state.json"))):
        assert time.monotonic() < deadline, "the first run never reached the last arm"
        time.sleep(0.5)
    assert proc.poll() is None, "the first run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "stages" / "arm_dpo_source_long.json").exists() and not (out / "report.html").exists()
    second = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert second.returncode == 0, second.stderr[-2000:]
    text = second.stdout + second.stderr
    # data, lr_calibration, reward, policy_samples, reward_shift, initial, dpo_source, rm_warm, oracle_warm
    assert text.count("done earlier") == 9
    assert "resuming from" in text  # dpo_source_long continues from its checkpoint
    # those 9, dpo_source_long, evaluate, selection
    assert len(list((out / "stages").glob("*.json"))) == 12 and not list(out.rglob("checkpoints"))
    row = next(r for r in json.loads((out / "results.json").read_text())["arms"] if r["arm"] == "rm_warm")
    assert row["matched"]["arm"] == "dpo_source_long" and row["matched"]["oracle"] == "oracle_warm"
    page = (out / "report.html").read_text()
    assert "None" not in page and page.index("class='verdict'") < page.index("<table>")
