"""Shared fixtures: tiny random models and small data written to a temp dir; no network."""

import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def iterate_config(out, tiny_dir, rm, prompts, reference, **top):
    """An `iterate` config on tiny models: 3 samples of 8 tokens per prompt, reward-model best-vs-worst labels,
    DPO rounds of batch 4."""
    return {"output_dir": str(out), "rounds": 2, "prompts": prompts, "reference": reference,
            "sample": {"sampling": {"n": 3, "max_new_tokens": 8}, "batch_size": 12, "progress": False},
            "label": {"labeller": "reward_model", "progress": False,
                      "reward_model": {"models": [rm], "pairs": "best_vs_worst"}},
            "train": {"model": {"path": tiny_dir}, "loss": {"name": "dpo", "beta": 0.1},
                      "train": {"batch_size": 4, "micro_batch_size": 2, "lr": 1e-3, "progress": False}}, **top}


def pref_rows(n=16):
    return [{"prompt": f"what is {i}?", "chosen": f"a good answer {i}", "rejected": f"bad rude long answer {i} {i} {i}",
             "weight": 0.5 + (i % 4) * 0.5} for i in range(n)]


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    from shiftalign.models.tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def prefs(tmp_path):
    return write_jsonl(tmp_path / "prefs.jsonl", pref_rows())


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SHIFTALIGN_CACHE", str(tmp_path / "cache"))
