"""bench/shift end to end on tiny models: every kind of arm runs and is cached, source pairs are built
by a behaviour policy, the gap-recovery ratio follows its definition, an arm without labels is
reported rather than fatal, and a rerun after a kill continues."""

import json
import sys
from pathlib import Path

import pytest
import yaml

from conftest import write_jsonl
from fake_llm_server import FakeLLM

sys.path.insert(0, str(Path(__file__).parents[1] / "bench" / "shift"))

TRAIN = {"batch_size": 2, "micro_batch_size": 2, "lr": 1e-3, "epochs": 1, "save_every": 2}


@pytest.fixture
def bench_cfg(tmp_path, tiny_dir):
    from shiftalign.models.tiny import save_tiny_encoder

    enc = save_tiny_encoder(tmp_path / "enc")
    (tmp_path / "gold.py").write_text("def g(prompts, responses):\n    return [r.count('o') / max(len(r), 1) "
                                      "for r in responses]\n")
    src = write_jsonl(tmp_path / "src.jsonl", [{"id": f"s{i}", "prompt": f"how do I fix {i}?"} for i in range(12)])
    tgt = write_jsonl(tmp_path / "tgt.jsonl", [{"id": f"t{i}", "prompt": f"why is {i} so?"} for i in range(8)])
    ev = write_jsonl(tmp_path / "ev.jsonl", [{"id": f"e{i}", "prompt": f"what about {i}?"} for i in range(6)])
    return {"output_dir": str(tmp_path / "bench"), "model": {"path": tiny_dir},
            "gold": {"name": "python", "function": f"{tmp_path / 'gold.py'}:g"},
            "data": {"source_prompts": src, "target_prompts": tgt, "eval_prompts": ev, "n_source": 10,
                     "behaviour": {"system": "Be brief.", "temperature": 1.0, "max_new_tokens": 6, "tau": 0.05}},
            "wrap_text_as_chat": False, "progress": False, "reward_train": TRAIN, "dpo_train": TRAIN,
            "policy_sampling": {"n": 3, "max_new_tokens": 6},
            "features": {"kind": "embedding", "model": enc},
            "evaluate": {"sampling": {"n": 2, "max_new_tokens": 6}, "bootstrap": 200},
            "arms": [{"name": "initial", "kind": "initial"},
                     {"name": "dpo_source", "kind": "dpo"},
                     {"name": "dpo_classifier", "kind": "dpo", "estimator": {"name": "classifier", "folds": 3}},
                     {"name": "dpo_kliep", "kind": "dpo", "estimator": {"name": "kliep"}, "stabilise": {"temper": 0.5}},
                     {"name": "dpo_policy_ratio", "kind": "dpo", "policy_ratio": {"form": "wpo"}},
                     {"name": "rm_iterative", "kind": "pseudo", "labeller": "reward_model", "rounds": 2},
                     {"name": "judge", "kind": "pseudo", "labeller": "judge"},
                     {"name": "oracle", "kind": "pseudo", "labeller": "gold"},
                     {"name": "rloo", "kind": "rl", "rl": {"algorithm": {"name": "rloo"}, "iterations": 2,
                                                            "prompts_per_iteration": 2, "minibatch_size": 4,
                                                            "sampling": {"n": 2, "max_new_tokens": 6}}}]}


def _run(cfg: dict, tmp_path, monkeypatch, server):
    import run

    cfg = {**cfg, "arms": [dict(a) for a in cfg["arms"]]}
    for judge in (a for a in cfg["arms"] if a["name"] == "judge"):
        judge["judge"] = {"backend": {"kind": "openai", "model": "fake", "base_url": server.openai_url,
                                      "api_key_env": "FAKE_JUDGE_KEY"}, "judge": {"max_tokens": 32}}
    monkeypatch.setenv("FAKE_JUDGE_KEY", "sk-test")
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return run.main([str(path)])


def test_every_arm_runs_and_results_follow_the_definitions(bench_cfg, tmp_path, monkeypatch, capsys):
    pytest.importorskip("openai")
    with FakeLLM() as server:  # its verdicts need the word "good": the tiny policy never writes it
        assert _run(bench_cfg, tmp_path, monkeypatch, server) == 0
    root = tmp_path / "bench"
    res = json.loads((root / "results.json").read_text())
    rows = {r["arm"]: r for r in res["arms"]}
    assert set(rows) == {a["name"] for a in bench_cfg["arms"]}
    assert "no pairs" in rows["judge"]["failed"]  # reported, not fatal
    ev = json.loads((root / "evaluate" / "evaluation.json").read_text())["policies"]
    assert "judge" not in ev and len(ev) == 8
    pairs = [json.loads(l) for l in (root / "data" / "source_pairs.jsonl").read_text().splitlines()]
    assert 0 < len(pairs) <= 10 and all({"gold_chosen", "gold_rejected", "p_label"} <= set(p) for p in pairs)
    # Oracle labels are gold labels: accuracy 1 by construction; a reward model's need not be.
    assert rows["oracle"]["label_accuracy"] == 1.0
    assert rows["dpo_classifier"]["ess_fraction"] is not None and rows["dpo_classifier"]["domain_auc"] is not None
    assert 0 < rows["dpo_policy_ratio"]["ess_fraction"] <= 1
    assert [r["round"] for r in json.loads((root / "stages" / "arm_rm_iterative.json").read_text())["rounds"]] == [1, 2]
    # Differences are against source-only DPO; the gap-recovery ratio is (arm - source) / (oracle - source)
    # when the oracle's interval lies above zero, and absent otherwise.
    base, oracle = ev["dpo_source"]["gold_mean"], ev["oracle"]["gold_mean"]
    for name, r in rows.items():
        if "failed" in r:
            continue
        assert r["diff"] == pytest.approx(ev[name]["gold_mean"] - base, abs=1e-9)
        lo, hi = ev["oracle"]["gold_diff_vs_dpo_source_ci95"]
        if name == "dpo_source":
            assert r["gap_recovery"] == 0.0
        elif lo > 0:
            assert r["gap_recovery"] == pytest.approx((ev[name]["gold_mean"] - base) / (oracle - base))
        else:
            assert r["gap_recovery"] is None
    # Round 1 of every pseudo-label arm reuses the shared policy samples.
    shared = (root / "policy_samples" / "samples.jsonl").read_text()
    assert (root / "oracle" / "round-1" / "samples.jsonl").read_text() == shared
    assert not list(root.rglob("checkpoints"))  # finished stages keep their models, not their checkpoints
    assert (root / "weights" / "dpo_kliep" / "config.yaml").exists() and "temper: 0.5" in \
        (root / "weights" / "dpo_kliep" / "config.yaml").read_text()
    html = (root / "report.html").read_text()
    assert html.count("<img ") >= 4 and "| oracle |" in (root / "results.md").read_text()


def test_a_killed_benchmark_continues(bench_cfg, tmp_path, monkeypatch, capsys):
    import harness

    cfg = {**bench_cfg, "arms": [a for a in bench_cfg["arms"] if a["name"] in ("initial", "dpo_source", "oracle")]}
    real = harness.ShiftBench.arm_pseudo

    def dying(self, a, ctx):
        raise KeyboardInterrupt

    monkeypatch.setattr(harness.ShiftBench, "arm_pseudo", dying)
    with FakeLLM() as server, pytest.raises(KeyboardInterrupt):
        _run(cfg, tmp_path, monkeypatch, server)
    done = sorted(p.stem for p in (tmp_path / "bench" / "stages").glob("*.json"))
    assert done == ["arm_dpo_source", "arm_initial", "data", "policy_samples", "reward"]
    monkeypatch.setattr(harness.ShiftBench, "arm_pseudo", real)
    capsys.readouterr()
    with FakeLLM() as server:
        assert _run(cfg, tmp_path, monkeypatch, server) == 0
    out = capsys.readouterr().out
    assert out.count("done earlier") == 5 and (tmp_path / "bench" / "results.json").exists()


def test_bad_arm_is_a_clear_error(bench_cfg, tmp_path, capsys):
    import run

    cfg = {**bench_cfg, "arms": [{"name": "initial", "kind": "initial"}, {"name": "x", "kind": "magic"}]}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert run.main([str(path)]) == 2
    assert "arms[1].kind: expected one of initial, dpo, pseudo, rl, got 'magic'" in capsys.readouterr().err


@pytest.mark.parametrize("oracle_ci, reported", [([0.05, 0.2], True), ([-0.1, 0.2], False), ([-0.3, -0.1], False)])
def test_gap_recovery_only_when_the_oracle_is_significantly_better(oracle_ci, reported):
    from types import SimpleNamespace

    from summary import arm_rows

    k = "gold_diff_vs_src"
    pol = {"src": {"gold_mean": 0.5, k: 0.0, f"{k}_ci95": [0.0, 0.0]},
           "oracle": {"gold_mean": 0.5 + sum(oracle_ci) / 2, k: sum(oracle_ci) / 2, f"{k}_ci95": oracle_ci},
           "method": {"gold_mean": 0.55, k: 0.05, f"{k}_ci95": [-0.01, 0.11]}}
    for e in pol.values():
        e.update(win_rate_vs_baseline=0.5, kl_to_baseline=0.1)
    cfg = SimpleNamespace(baseline_arm="src", oracle_arm="oracle")
    rows = {r["arm"]: r for r in arm_rows(cfg, [], {n: {} for n in pol}, {"policies": pol})}
    if reported:
        assert rows["method"]["gap_recovery"] == pytest.approx(0.05 / 0.125)
    else:
        assert rows["method"]["gap_recovery"] is None  # an oracle worse than source-only gives no ratio
