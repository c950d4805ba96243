"""`shiftalign sample` on a tiny model: rows, recorded log-probs, resume; the backends (vLLM against a stand-in)."""

import json

import pytest
import torch
import yaml

from shiftalign.cli import main
from shiftalign.config import from_dict
from shiftalign.io import read_jsonl
from shiftalign.rollout.sample import SampleConfig
from shiftalign.rollout.sample import main as sample_main

from conftest import write_jsonl


def _cfg(tmp_path, tiny_dir, prompts, **kw):
    cfg = {"prompts": prompts, "output": str(tmp_path / "s.jsonl"), "policy": {"path": tiny_dir},
           "sampling": {"n": 3, "max_new_tokens": 12, "temperature": 1.0, "seed": 1}, "batch_size": 6,
           "progress": False, **kw}
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return str(p)


def test_sample_rows_logps_and_resume(tmp_path, tiny_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    prompts = write_jsonl(tmp_path / "p.jsonl", [{"id": f"p{i}", "prompt": "hello " * (i + 1)} for i in range(5)])
    assert main(["sample", _cfg(tmp_path, tiny_dir, prompts)]) == 0
    rows = [json.loads(l) for l in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert len(rows) == 15 and sorted({r["prompt_id"] for r in rows}) == [f"p{i}" for i in range(5)]
    assert all(1 <= r["n_tokens"] <= 12 and r["sampling"]["n"] == 3 for r in rows)
    # The recorded log-prob is log pi(y|x) under the policy, as a plain forward pass computes it.
    model = AutoModelForCausalLM.from_pretrained(tiny_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    for r in rows[:6]:
        p_ids = tok(r["prompt"], add_special_tokens=False)["input_ids"]
        ids = torch.tensor([p_ids + r["completion_ids"]])
        with torch.no_grad():
            lp = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
        ref = lp[len(p_ids) - 1:].gather(-1, ids[0, len(p_ids):, None]).sum().item()
        assert r["logp"] == pytest.approx(ref, abs=1e-3)
        assert r["finished"] == (tok.eos_token_id in r["completion_ids"])

    # Simulate a kill: drop the last prompt's rows and leave a half-written line; the rerun completes
    # the file without duplicating finished prompts.
    lines = (tmp_path / "s.jsonl").read_text().splitlines(keepends=True)
    kept = [l for l in lines if json.loads(l)["prompt_id"] != rows[-1]["prompt_id"]]
    (tmp_path / "s.jsonl").write_text("".join(kept) + '{"id": "p9-0", "prompt_id": ')
    assert main(["sample", _cfg(tmp_path, tiny_dir, prompts)]) == 0
    again = [json.loads(l) for l in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert len(again) == 15 and len({r["id"] for r in again}) == 15
    assert again[:12] == [json.loads(l) for l in kept]


def test_resume_refuses_samples_of_another_policy_or_settings(tmp_path, tiny_dir):
    import shutil

    from shiftalign.models.tiny import save_tiny

    prompts = write_jsonl(tmp_path / "p.jsonl", [{"id": f"p{i}", "prompt": "hello " * (i + 1)} for i in range(3)])
    model = tmp_path / "model"
    shutil.copytree(tiny_dir, model)
    assert main(["sample", _cfg(tmp_path, str(model), prompts)]) == 0
    before = (tmp_path / "s.jsonl").read_bytes()
    # other sampling settings into the same file: refused, file untouched
    other = _cfg(tmp_path, str(model), prompts, sampling={"n": 3, "max_new_tokens": 12, "temperature": 0.5, "seed": 1})
    assert main(["sample", other]) != 0
    assert (tmp_path / "s.jsonl").read_bytes() == before
    # the model at the same path retrained (other weights): refused too
    shutil.rmtree(model)
    save_tiny(model, seed=7)
    assert main(["sample", _cfg(tmp_path, str(model), prompts)]) != 0
    assert (tmp_path / "s.jsonl").read_bytes() == before
    # replace_stale: the stale rows are dropped and sampled again by the new model
    assert main(["sample", _cfg(tmp_path, str(model), prompts, replace_stale=True)]) == 0
    rows = [json.loads(l) for l in (tmp_path / "s.jsonl").read_text().splitlines()]
    old = [json.loads(l) for l in before.decode().splitlines()]
    assert len(rows) == 9 and {r["sample_key"] for r in rows} != {r["sample_key"] for r in old}


def test_sample_greedy_is_deterministic(tmp_path, tiny_dir):
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "the quick"}, {"prompt": "a good answer"}])
    cfg = _cfg(tmp_path, tiny_dir, prompts, sampling={"n": 2, "max_new_tokens": 8, "temperature": 0.0})
    assert main(["sample", cfg]) == 0
    rows = [json.loads(l) for l in (tmp_path / "s.jsonl").read_text().splitlines()]
    by_prompt = {}
    for r in rows:
        by_prompt.setdefault(r["prompt_id"], []).append(r["completion_ids"])
    assert all(a == b for a, b in by_prompt.values())


def test_two_processes_shard_and_merge(tmp_path, tiny_dir):
    """Under torchrun each process samples its share of the prompts; the main process merges."""
    import os
    import subprocess
    import sys

    prompts = write_jsonl(tmp_path / "p.jsonl", [{"id": f"p{i}", "prompt": f"hello {i}"} for i in range(6)])
    cfg = _cfg(tmp_path, tiny_dir, prompts)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           "29544", "-m", "shiftalign.cli", "sample", cfg], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(l) for l in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert sorted({r["prompt_id"] for r in rows}) == [f"p{i}" for i in range(6)] and len(rows) == 18
    shards = [json.loads(l)["prompt_id"] for l in (tmp_path / "s.rank-1.jsonl").read_text().splitlines()]
    assert set(shards) == {"p1", "p3", "p5"}


def test_backends_are_registry_entries(tmp_path, tiny_dir, capsys):
    from shiftalign.rollout.backends import SAMPLERS

    assert SAMPLERS.names() == ["decode", "hf", "vllm"]
    assert [SAMPLERS.get(n).loads_model for n in SAMPLERS.names()] == [True, True, False]
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"id": "p0", "prompt": "hi"}])
    assert main(["sample", _cfg(tmp_path, tiny_dir, prompts, backend="beam")]) != 0
    assert "unknown sampling backend 'beam'; known: decode, hf, vllm" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["decode", "hf"])
def test_a_resumed_job_draws_what_an_uninterrupted_one_draws(tmp_path, tiny_dir, backend):
    """Each prompt's samples come from its own seed (the sampling seed and its id): a job that stopped after
    some prompts, resumed, ends with the rows of a job that never stopped, though its batches differ."""
    prompts = [{"id": f"p{i}", "prompt": "why " * (1 + i % 3) + str(i)} for i in range(7)]
    full, part = write_jsonl(tmp_path / "all.jsonl", prompts), write_jsonl(tmp_path / "part.jsonl", prompts[2:5])
    base = {"policy": {"path": tiny_dir}, "sampling": {"n": 2, "max_new_tokens": 6, "temperature": 1.0, "seed": 5},
            "batch_size": 4, "backend": backend, "progress": False}

    def run(prompts_file, out):
        sample_main(from_dict(SampleConfig, {**base, "prompts": prompts_file, "output": str(out)}))
        return {r["id"]: (r["completion_ids"], round(r["logp"], 5)) for r in read_jsonl(out)}

    once = run(full, tmp_path / "once.jsonl")
    run(part, tmp_path / "resumed.jsonl")  # stopped after three prompts ...
    resumed = run(full, tmp_path / "resumed.jsonl")  # ... and resumed: the other four in other batches
    assert resumed == once and len(once) == 14
    assert len({tuple(v[0]) for v in once.values()}) > 7  # sampled, not one sequence repeated


class _StandInVLLM:
    """A stand-in ``vllm`` module that records its calls: engines built, requests with their seeds (and the
    adapter request they carry, in ``adapters``); its "samples" are a function of the prompt and the seed, its
    log-prob their token sum, negated. ``modules``: it and its ``vllm.lora.request``, for ``sys.modules``."""

    def __init__(self, logprob=True):
        self.engines, self.requests, self.adapters, self.logprob = [], [], [], logprob
        outer = self

        class SamplingParams:
            def __init__(self, **kw):
                self.kw = kw

        class LoRARequest:
            def __init__(self, lora_name, lora_int_id, lora_path):
                self.args = (lora_name, lora_int_id, lora_path)

        class LLM:
            def __init__(self, **kw):
                outer.engines.append(kw)

            def generate(self, prompts, sps, lora_request=None):
                outer.requests.append([sp.kw["seed"] for sp in sps])
                outer.adapters.append(None if lora_request is None else lora_request.args)
                outs = []
                for pr, sp in zip(prompts, sps):
                    comps = []
                    for k in range(sp.kw["n"]):
                        ids = [(sp.kw["seed"] + 7 * k + i) % 50 + 5 for i in range(3)]
                        comps.append(type("C", (), {"token_ids": ids, "finish_reason": "length",
                                                    "cumulative_logprob": -float(sum(ids)) if outer.logprob else None}))
                    outs.append(type("O", (), {"outputs": comps}))
                return outs

        self.module = type("vllm", (), {"LLM": LLM, "SamplingParams": SamplingParams})
        request = type("vllm.lora.request", (), {"LoRARequest": LoRARequest})
        self.modules = {"vllm": self.module, "vllm.lora": type("vllm.lora", (), {"request": request}),
                        "vllm.lora.request": request}


def test_vllm_is_one_engine_per_stage_with_a_seed_per_prompt_and_never_a_silent_log_prob(tmp_path, tiny_dir,
                                                                                        monkeypatch):
    """Against a stand-in vllm module: one engine per sampling stage (raw log-probs asked for), reused by every
    batch; each prompt's request carries the prompt's own seed, so a resumed stage draws what an uninterrupted
    one draws; a response without a log-prob stops the stage instead of recording 0."""
    import sys

    from shiftalign.rollout.sample import prompt_seed

    fake = _StandInVLLM()
    monkeypatch.setitem(sys.modules, "vllm", fake.module)
    prompts = [{"id": f"p{i}", "prompt": f"q {i}"} for i in range(5)]
    full = write_jsonl(tmp_path / "all.jsonl", prompts)
    base = {"policy": {"path": tiny_dir}, "sampling": {"n": 2, "max_new_tokens": 3, "seed": 4}, "batch_size": 4,
            "backend": "vllm", "progress": False}

    def run(prompts_file, out):
        sample_main(from_dict(SampleConfig, {**base, "prompts": prompts_file, "output": str(out)}))
        return {r["id"]: (r["completion_ids"], r["logp"]) for r in read_jsonl(out)}

    once = run(full, tmp_path / "once.jsonl")
    assert len(fake.engines) == 1 and fake.engines[0]["logprobs_mode"] == "raw_logprobs"
    # on a CPU, chunked prefill off: vLLM 0.32 cannot rewind a seeded request's CPU generator after a partial prefill
    assert fake.engines[0]["enable_chunked_prefill"] is False
    assert len(fake.requests) == 3  # three batches of two prompts, one engine
    assert sorted(s for batch in fake.requests for s in batch) == sorted(prompt_seed(4, f"p{i}") for i in range(5))
    assert all(lp == -float(sum(ids)) for ids, lp in once.values())
    run(write_jsonl(tmp_path / "part.jsonl", prompts[1:3]), tmp_path / "resumed.jsonl")
    assert run(full, tmp_path / "resumed.jsonl") == once
    monkeypatch.setitem(sys.modules, "vllm", _StandInVLLM(logprob=False).module)
    with pytest.raises(RuntimeError, match="without its log-prob"):
        run(full, tmp_path / "none.jsonl")


def test_the_backend_and_its_engine_settings_reach_every_sampler_of_evaluate_and_the_experiment(tmp_path, tiny_dir,
                                                                                               monkeypatch):
    """evaluate samples through the backend it names (one engine per policy, with the settings given); the
    experiment's policy samples take its `backend` and `vllm`; an unknown backend is refused with the config."""
    import sys

    from shiftalign.errors import ConfigError
    from shiftalign.experiment.config import ExperimentConfig
    from shiftalign.experiment.context import DataFiles, Setup
    from shiftalign.experiment.engine import validate_inputs
    from shiftalign.recipes.evaluate import EvaluateConfig
    from shiftalign.recipes.evaluate import main as evaluate_main
    from shiftalign.rollout.params import VLLMConfig

    fake = _StandInVLLM()
    monkeypatch.setitem(sys.modules, "vllm", fake.module)
    (tmp_path / "gold.py").write_text("def g(prompts, responses):\n    return [len(r) for r in responses]\n")
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"id": f"p{i}", "prompt": f"q {i}"} for i in range(3)])
    ev = evaluate_main(EvaluateConfig(prompts=prompts, policies={"a": tiny_dir, "b": tiny_dir}, baseline="a",
                                      gold={"name": "python", "function": f"{tmp_path / 'gold.py'}:g"},
                                      backend="vllm", vllm=VLLMConfig(tensor_parallel_size=2, enforce_eager=True),
                                      output_dir=str(tmp_path / "ev"), bootstrap=50, progress=False))
    assert len(fake.engines) == 2 and all(e["tensor_parallel_size"] == 2 and e["enforce_eager"] for e in fake.engines)
    assert set(ev["policies"]) == {"a", "b"} and ev["policies"]["b"]["kl_to_baseline"] == pytest.approx(0, abs=1e-6)

    seen = []
    monkeypatch.setattr("shiftalign.rollout.sample.main", lambda sc: seen.append(sc))
    cfg = ExperimentConfig(backend="vllm", vllm=VLLMConfig(gpu_memory_utilization=0.5))
    Setup(cfg, tmp_path, DataFiles("s", prompts, "e")).target_samples(tiny_dir, tmp_path / "x.jsonl")
    assert seen[0].backend == "vllm" and seen[0].vllm.gpu_memory_utilization == 0.5
    with pytest.raises(ConfigError, match="unknown sampling backend 'magic'"):
        validate_inputs(ExperimentConfig(backend="magic", arms=[{"name": "initial", "kind": "initial"}],
                                         baseline_arm="initial", oracle_arm=None))


def _lora_run(run, base, r=4):
    """A LoRA run's files as ``recipes.common.save_final`` writes them: ``run/adapter`` (peft) and ``run/model``
    (merged, with the tokenizer); the adapter's lora_B made non-zero so that it changes the model."""
    from shiftalign.config import ModelConfig
    from shiftalign.models.load import load_policy

    model, tok = load_policy(from_dict(ModelConfig, {"path": base, "lora": {"r": r, "target_modules": ["q_proj", "v_proj"]}}))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(0)) * 0.1)
    model.save_pretrained(run / "adapter")
    model.merge_and_unload().save_pretrained(run / "model")
    tok.save_pretrained(run / "model")
    return str(run / "model")


def test_vllm_serves_a_lora_policy_as_an_adapter_request_on_its_base(tmp_path, monkeypatch):
    """With vllm.lora_adapters, a LoRA run's model/ (and a bare peft adapter directory) is sampled as an adapter
    request on an engine of the adapter's base: LoRA enabled, one adapter, max_lora_rank the adapter's rank
    rounded up to a rank vLLM takes; every request carries the adapter. Its rows get a key of their own, which
    follows the adapter's and the base's files; a policy that is not LoRA keeps the engine and the key it has
    without the setting; a bare adapter without it is refused."""
    import shutil
    import sys

    from shiftalign.errors import ConfigError
    from shiftalign.models.tiny import save_tiny
    from shiftalign.rollout.sample import sample_key

    fake = _StandInVLLM()
    for name, module in fake.modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    base = save_tiny(tmp_path / "base")
    merged = _lora_run(tmp_path / "run", base)
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"id": f"p{i}", "prompt": f"q {i}"} for i in range(3)])

    def cfg(policy, out, **vllm):
        return from_dict(SampleConfig, {"prompts": prompts, "output": str(tmp_path / out), "policy": {"path": policy},
                                        "sampling": {"n": 2, "max_new_tokens": 3}, "batch_size": 4,
                                        "backend": "vllm", "progress": False, "vllm": vllm})

    served = cfg(merged, "lora.jsonl", lora_adapters=True)
    sample_main(served)
    engine = fake.engines[-1]
    assert engine["model"] == base and engine["enable_lora"] and engine["max_loras"] == 1
    assert engine["max_lora_rank"] == 8 and "lora_adapters" not in engine  # r=4 -> vLLM's next rank
    assert fake.adapters == [("policy", 1, str(tmp_path / "run" / "adapter"))] * 2  # two batches
    key = sample_key(served)
    assert {r["sample_key"] for r in read_jsonl(served.output)} == {key}
    assert key != sample_key(cfg(merged, "x.jsonl"))  # the merged weights, loaded: another computation

    fake.adapters.clear()
    sample_main(cfg(str(tmp_path / "run" / "adapter"), "bare.jsonl", lora_adapters=True))  # its base's tokenizer
    assert fake.engines[-1]["model"] == base and fake.adapters == [("policy", 1, str(tmp_path / "run" / "adapter"))] * 2
    with pytest.raises(ConfigError, match="lora_adapters: true"):
        sample_main(cfg(str(tmp_path / "run" / "adapter"), "refused.jsonl"))

    fake.adapters.clear()
    sample_main(cfg(base, "plain.jsonl", lora_adapters=True))  # not LoRA: as without the setting
    assert fake.engines[-1]["model"] == base and "enable_lora" not in fake.engines[-1] and fake.adapters == [None] * 2
    assert sample_key(cfg(base, "x.jsonl", lora_adapters=True)) == sample_key(cfg(base, "x.jsonl"))

    # the key follows the files served: the adapter retrained, the base retrained at the same path
    _lora_run(tmp_path / "other", base)
    shutil.copy(tmp_path / "other" / "adapter" / "adapter_model.safetensors", tmp_path / "run" / "adapter")
    assert sample_key(served) != key
    key = sample_key(served)
    shutil.rmtree(base)
    save_tiny(base, seed=3)
    assert sample_key(served) != key
