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


TRAIN = {"batch_size": 2, "micro_batch_size": 2, "lr": 1e-3, "epochs": 1, "save_every": 2}  # tiny training settings of the experiment tests


@pytest.fixture
def bench_cfg(tmp_path, tiny_dir):
    """An experiment config with every kind of arm on tiny models and a python gold (the experiment tests)."""
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
