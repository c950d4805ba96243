"""`lr_calibration` end to end on tiny models: the DPO learning rate is the largest candidate at which
source-only DPO stays within the KL budget, every arm trains at it, and a bad setting is refused."""

import json

import pytest
import yaml

from fake_llm_server import FakeLLM
from helpers import run_experiment_config as _run


def test_lr_calibration_picks_the_largest_rate_within_the_kl_budget_for_every_arm(bench_cfg, tmp_path, monkeypatch,
                                                                                  capsys):
    """Source-only DPO is tried largest rate first; the first within the KL budget becomes dpo_train.lr of the
    arms (an arm's own train.lr still wins; lr_scale multiplies either); with no rate within budget the smallest
    is used and said so."""
    arms = [{"name": "initial", "kind": "initial"}, {"name": "dpo_source", "kind": "dpo"},
            {"name": "dpo_fixed", "kind": "dpo", "train": {"lr": 1e-3}},
            {"name": "dpo_push", "kind": "dpo", "lr_scale": 3.0},
            {"name": "dpo_fixed_push", "kind": "dpo", "train": {"lr": 1e-3}, "lr_scale": 2.0}]
    cfg = {**bench_cfg, "arms": arms, "oracle_arm": None,
           "lr_calibration": {"candidates": [1e-7, 0.05], "max_kl": 0.01, "prompts": 4}}
    with FakeLLM() as server:
        assert _run(cfg, tmp_path, monkeypatch, server) == 0
        root = tmp_path / "bench"
        cal = json.loads((root / "results.json").read_text())["lr_calibration"]
        assert [t["lr"] for t in cal["tried"]] == [0.05, 1e-7]
        assert cal["tried"][0]["kl"] > 0.01 >= cal["tried"][1]["kl"] >= 0
        assert cal["lr"] == 1e-7 and cal["within_budget"]
        lrs = {a: yaml.safe_load((root / a / "config.yaml").read_text())["train"]["lr"]
               for a in ("dpo_source", "dpo_fixed", "dpo_push", "dpo_fixed_push")}
        assert lrs == pytest.approx({"dpo_source": 1e-7, "dpo_fixed": 1e-3, "dpo_push": 3e-7, "dpo_fixed_push": 2e-3})
        assert not (root / "lr_calibration" / "lr_0.05" / "train" / "model").exists()
        # The chosen rate's run is source-only DPO's: kept, and reused rather than trained again.
        chosen = root / "lr_calibration" / "lr_1e-07" / "train"
        assert json.loads((root / "dpo_source" / "reused.json").read_text())["from"] == str(chosen)
        assert not (root / "dpo_fixed" / "reused.json").exists()
        text = (root / "results.md").read_text()
        assert "Learning rate 1e-07, calibrated without the gold reward" in text
        assert f"was {cal['tried'][0]['kl']:.1f} nats at lr 0.05, {cal['tried'][1]['kl']:.1f} nats at lr 1e-07" in text

        tight = {**cfg, "output_dir": str(tmp_path / "tight"),
                 "lr_calibration": {**cfg["lr_calibration"], "max_kl": 1e-30}}
        assert _run(tight, tmp_path, monkeypatch, server) == 0
        cal = json.loads((tmp_path / "tight" / "results.json").read_text())["lr_calibration"]
        assert cal["lr"] == 1e-7 and not cal["within_budget"] and len(cal["tried"]) == 2
        assert "no candidate was within the budget" in (tmp_path / "tight" / "results.md").read_text()
        assert not (tmp_path / "tight" / "dpo_source" / "reused.json").exists()  # its probe was over budget: deleted

        capsys.readouterr()
        bad = {**cfg, "output_dir": str(tmp_path / "bad"), "lr_calibration": {"candidates": []}}
        assert _run(bad, tmp_path, monkeypatch, server) == 2
        assert "lr_calibration.candidates: expected a non-empty list" in capsys.readouterr().err
        assert not (tmp_path / "bad").exists()
