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
