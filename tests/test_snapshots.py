"""train.snapshots: the model saved at fractions of a run's steps (the points of a gold-against-KL frontier),
loadable, listed in the run's result, linked with a reused run and never silently missing from one."""

import json
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM

from shiftalign.config import RunConfig, from_dict
from shiftalign.errors import ConfigError
from shiftalign.recipes import RECIPES
from shiftalign.train.loop import snapshot_steps

from conftest import pref_rows, write_jsonl


def _run(tiny_dir, data, out, store=None, **train):
    cfg = from_dict(RunConfig, {"recipe": "preference", "output_dir": str(out), "model": {"path": tiny_dir},
                                "data": {"train": str(data)}, "loss": {"name": "dpo"},
                                "reuse": str(store) if store else None,
                                "train": {"batch_size": 2, "micro_batch_size": 2, "lr": 1e-2, "progress": False, "schedule": "constant",
                                          **train}})
    return RECIPES.get("preference").main(cfg)


def test_snapshot_steps_are_fractions_of_the_run_before_its_end():
    assert snapshot_steps([0.25, 0.5, 0.75], 8) == [2, 4, 6]
    assert snapshot_steps([0.01, 0.99], 8) == [1]  # at least step 1; the last step is the final model
    assert snapshot_steps([], 8) == []
    with pytest.raises(ConfigError, match=r"train.snapshots: .* \(0, 1\), got \[1.0\]"):
        snapshot_steps([1.0], 8)


def test_snapshots_are_the_model_at_those_steps_and_a_reused_run_links_them(tiny_dir, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", pref_rows())
    n = len(pref_rows()) // 2
    res = _run(tiny_dir, data, tmp_path / "a", tmp_path / "store", snapshots=[0.5])
    assert [p.rsplit("/", 1)[-1] for p in res.snapshots] == [f"step-{n // 2:08d}"]
    mid = AutoModelForCausalLM.from_pretrained(res.snapshots[0])
    # The snapshot is the model after that many steps: a run stopped there (constant rate) ends with the same
    # weights.
    short = _run(tiny_dir, data, tmp_path / "short", max_steps=n // 2)
    ref = AutoModelForCausalLM.from_pretrained(short.model)
    final = AutoModelForCausalLM.from_pretrained(res.model)
    for (name, a), b, c in zip(mid.state_dict().items(), ref.state_dict().values(), final.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name
    assert any(not torch.allclose(a, c) for a, c in zip(mid.state_dict().values(), final.state_dict().values()))
    # The same run elsewhere is linked with its snapshots; once they are gone it trains again.
    again = _run(tiny_dir, data, tmp_path / "b", tmp_path / "store", snapshots=[0.5])
    assert (tmp_path / "b" / "reused.json").exists() and again.snapshots == [
        str(tmp_path / "b" / "snapshots" / f"step-{n // 2:08d}")]
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["snapshots"] == again.snapshots
    shutil.rmtree(tmp_path / "a" / "snapshots")
    third = _run(tiny_dir, data, tmp_path / "c", tmp_path / "store", snapshots=[0.5])
    assert not (tmp_path / "c" / "reused.json").exists() and len(third.snapshots) == 1


def test_snapshots_of_a_lora_run_are_refused(tiny_dir, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", pref_rows())
    cfg = from_dict(RunConfig, {"recipe": "preference", "output_dir": str(tmp_path / "o"),
                                "model": {"path": tiny_dir, "lora": {"r": 4}}, "data": {"train": str(data)},
                                "loss": {"name": "dpo"}, "train": {"batch_size": 2, "micro_batch_size": 2,
                                                                   "progress": False, "snapshots": [0.5]}})
    with pytest.raises(ConfigError, match="LoRA"):
        RECIPES.get("preference").main(cfg)
