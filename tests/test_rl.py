"""Online RL on a tiny random model with a synthetic reward: the fraction of one target token in the
response. Mean reward must rise clearly for PPO, RLOO and GRPO; a large KL coefficient keeps KL small."""

import json

import pytest
import yaml

from shiftalign.cli import main

from conftest import write_jsonl

SCORER = '''
def target_fraction(prompts, responses):
    return [r.count("o") / max(len(r), 1) for r in responses]
'''


def _run(tmp_path, tiny_dir, algo, iterations=12, kl=0.0, name="run", lr=3e-2, train=None, **extra):
    (tmp_path / "score.py").write_text(SCORER)
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"id": f"q{i}", "prompt": f"what is {i}"} for i in range(8)])
    cfg = {"recipe": "rl", "output_dir": str(tmp_path / name), "model": {"path": tiny_dir}, "prompts": prompts,
           "algorithm": {"name": algo}, "scorer": {"name": "python", "function": f"{tmp_path / 'score.py'}:target_fraction"},
           "sampling": {"n": 4, "max_new_tokens": 8, "temperature": 1.0}, "prompts_per_iteration": 4,
           "iterations": iterations, "epochs_per_rollout": 2, "minibatch_size": 8, "kl": {"coef": kl},
           "train": {"lr": lr, "progress": False, **(train or {})}, **extra}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(path)]) == 0
    return [json.loads(l) for l in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("algo", ["ppo", "rloo", "grpo"])
def test_reward_rises(tmp_path, tiny_dir, algo):
    recs = _run(tmp_path, tiny_dir, algo)
    first = sum(r["reward_mean"] for r in recs[:3]) / 3
    last = sum(r["reward_mean"] for r in recs[-3:]) / 3
    assert last > first + 0.15, [round(r["reward_mean"], 3) for r in recs]
    for key in ("kl", "entropy", "clip_fraction", "response_length", "time_sample", "time_score", "time_update"):
        assert key in recs[-1]
    if algo == "ppo":
        assert "value_loss" in recs[-1] and "explained_variance" in recs[-1]


def test_large_kl_coefficient_keeps_kl_small(tmp_path, tiny_dir):
    free = _run(tmp_path, tiny_dir, "rloo", iterations=10, kl=0.0, name="free")
    tied = _run(tmp_path, tiny_dir, "rloo", iterations=10, kl=5.0, name="tied")
    kl_free = sum(abs(r["kl"]) for r in free[-3:]) / 3
    kl_tied = sum(abs(r["kl"]) for r in tied[-3:]) / 3
    assert kl_tied < 0.25 * kl_free, (kl_tied, kl_free)


def _stopped_after(monkeypatch, iterations_done: int):
    """The RL loop is interrupted when it starts iteration ``iterations_done + 1``."""
    from shiftalign.train.online import RLTrainer

    real = RLTrainer.rollout

    def rollout(self, it):
        if it == iterations_done:
            raise KeyboardInterrupt
        return real(self, it)

    monkeypatch.setattr(RLTrainer, "rollout", rollout)
    return lambda: monkeypatch.setattr(RLTrainer, "rollout", real)


def test_resume_continues(tmp_path, tiny_dir, monkeypatch):
    restore = _stopped_after(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, tiny_dir, "grpo", iterations=6, name="r", train={"save_every": 2})
    restore()
    recs = _run(tmp_path, tiny_dir, "grpo", iterations=6, name="r", train={"save_every": 2})
    assert [r["step"] for r in recs] == [1, 2, 3, 4, 5, 6]


def test_resume_is_exact(tmp_path, tiny_dir, monkeypatch):
    """Interrupted after two iterations and resumed to four: the same weights as four straight iterations."""
    import torch
    from safetensors.torch import load_file

    _run(tmp_path, tiny_dir, "ppo", iterations=4, name="straight", train={"save_every": 2, "keep_optimizer_state": True})
    restore = _stopped_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, tiny_dir, "ppo", iterations=4, name="split", train={"save_every": 2, "keep_optimizer_state": True})
    restore()
    _run(tmp_path, tiny_dir, "ppo", iterations=4, name="split", train={"save_every": 2, "keep_optimizer_state": True})
    a = load_file(str(tmp_path / "straight" / "checkpoints" / "step-00000004" / "trainable.safetensors"))
    b = load_file(str(tmp_path / "split" / "checkpoints" / "step-00000004" / "trainable.safetensors"))
    assert set(a) == set(b) and any("value_head" in k for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_a_finished_rl_run_is_not_redone_and_another_config_is_refused(tmp_path, tiny_dir, capsys):
    _run(tmp_path, tiny_dir, "rloo", iterations=2, name="f")
    assert not (tmp_path / "f" / "checkpoints").exists()  # a finished run keeps its model, not optimiser state
    before = (tmp_path / "f" / "model" / "model.safetensors").stat().st_mtime_ns
    _run(tmp_path, tiny_dir, "rloo", iterations=2, name="f")
    assert (tmp_path / "f" / "model" / "model.safetensors").stat().st_mtime_ns == before
    assert "finished earlier" in capsys.readouterr().out
    assert main(["train", str(tmp_path / "f.yaml"), "iterations=3"]) == 2
    assert "differs in: iterations 2 -> 3" in capsys.readouterr().err


def test_prompt_weights(tmp_path, tiny_dir):
    weights = tmp_path / "w.jsonl"
    weights.write_text("".join(json.dumps({"id": f"q{i}", "weight": 0.5 + i}) + "\n" for i in range(8)))
    recs = _run(tmp_path, tiny_dir, "grpo", iterations=2, name="w", prompt_weights=str(weights))
    assert len(recs) == 2
    weights.write_text(json.dumps({"id": "q0", "weight": 1.0}) + "\n")
    cfg = tmp_path / "w.yaml"
    assert main(["train", str(cfg), f"output_dir={tmp_path / 'w2'}"]) == 2  # a prompt without a weight is an error


NOISY_Q3 = SCORER + '''
def noisy_q3(prompts, responses):
    base = target_fraction(prompts, responses)
    return [b + (7.0 * (i % 3) if p == "what is 3" else 0.0) for i, (p, b) in enumerate(zip(prompts, base))]
'''


@pytest.mark.parametrize("algo", ["grpo", "ppo"])
def test_a_prompt_of_weight_zero_contributes_no_gradient(tmp_path, tiny_dir, algo):
    """Rewards of prompt q3 changed wildly: with q3's weight 0 the trained weights are bit-identical to
    those trained on the unchanged rewards; with weight 1 they differ (the change reaches the loss)."""
    from safetensors.torch import load_file

    (tmp_path / "noisy.py").write_text(NOISY_Q3)

    def trained(name, w3, scorer):
        wf = tmp_path / f"{name}.jsonl"
        wf.write_text("".join(json.dumps({"id": f"q{i}", "weight": w3 if i == 3 else 1.0 + 0.25 * i}) + "\n"
                              for i in range(8)))
        _run(tmp_path, tiny_dir, algo, iterations=1, name=name, prompt_weights=str(wf), prompts_per_iteration=8,
             scorer={"name": "python", "function": f"{tmp_path / 'noisy.py'}:{scorer}"})
        return load_file(str(tmp_path / name / "model" / "model.safetensors"))

    plain, noisy = trained("plain0", 0.0, "target_fraction"), trained("noisy0", 0.0, "noisy_q3")
    assert all(torch_equal(plain[k], noisy[k]) for k in plain)
    plain, noisy = trained("plain1", 1.0, "target_fraction"), trained("noisy1", 1.0, "noisy_q3")
    assert not all(torch_equal(plain[k], noisy[k]) for k in plain)


def torch_equal(a, b) -> bool:
    import torch

    return torch.equal(a, b)


@pytest.mark.parametrize("t", [0.7, 1.0])
def test_rl_log_probs_are_those_of_the_tempered_policy(tiny_dir, t):
    import torch

    from shiftalign.data.batching import collate
    from shiftalign.data.tokenize import Tokenized
    from shiftalign.models.tiny import tiny_causal_lm
    from shiftalign.train.online import PolicyWithValue

    model, tok = tiny_causal_lm(seed=4)
    with torch.no_grad():
        model.lm_head.weight.mul_(20)  # a peaked distribution: temperature changes it clearly
    prompt, resp = tok("what is 3", add_special_tokens=False)["input_ids"], [5, 9, 17, tok.eos_token_id]
    batch = collate([Tokenized(0, "x", prompt, [resp])], tok.pad_token_id)
    with torch.no_grad():
        got = PolicyWithValue(model, False, t)(batch)
        logits = model(torch.tensor([prompt + resp])).logits[0, len(prompt) - 1:-1] / t
    want = torch.log_softmax(logits, -1)
    assert torch.allclose(got["logps"], want.gather(-1, torch.tensor(resp)[:, None])[:, 0], atol=1e-4)
    assert torch.allclose(got["entropy"], -(want.exp() * want).sum(-1), atol=1e-4)


@pytest.mark.parametrize("sampling", [{"top_p": 0.9}, {"top_k": 5}, {"temperature": 0.0}])
def test_rl_refuses_truncated_or_greedy_sampling(tmp_path, tiny_dir, sampling, capsys):
    (tmp_path / "score.py").write_text(SCORER)
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "what is 1"}, {"prompt": "what is 2"}])
    cfg = {"recipe": "rl", "output_dir": str(tmp_path / "run"), "model": {"path": tiny_dir}, "prompts": prompts,
           "scorer": {"name": "python", "function": f"{tmp_path / 'score.py'}:target_fraction"},
           "sampling": {"n": 2, "max_new_tokens": 4, "temperature": 1.0, **sampling}, "train": {"progress": False}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(tmp_path / "c.yaml")]) == 2
    assert "tempered policy" in capsys.readouterr().err


def test_rl_tree_rows_equal_one_row_per_sample():
    """Rollouts score each prompt's k samples in one tree row [prompt | s1 | ... | sk]: token log-probs,
    entropies and values equal those of one row per sample."""
    import torch

    from shiftalign.data.batching import collate
    from shiftalign.data.tokenize import Tokenized
    from shiftalign.models.tiny import tiny_causal_lm
    from shiftalign.train.online import PolicyWithValue

    model, tok = tiny_causal_lm(seed=2)
    policy = PolicyWithValue(model, True, 0.9)
    with torch.no_grad():
        policy.value_head.weight.normal_()
    prompts = [tok("what is 3", add_special_tokens=False)["input_ids"], tok("hi", add_special_tokens=False)["input_ids"]]
    samples = [[[5, 9, 17, tok.eos_token_id], [7], [11, 12, 13, 14, 15, 16]], [[3, 4], [8, 8, 8], [21, tok.eos_token_id]]]
    with torch.no_grad():
        tree = policy(collate([Tokenized(i, str(i), p, s) for i, (p, s) in enumerate(zip(prompts, samples))],
                              tok.pad_token_id))
        single = policy(collate([Tokenized(0, "x", p, [c]) for p, s in zip(prompts, samples) for c in s],
                                tok.pad_token_id))
    for key in ("logps", "entropy", "values"):
        assert tree[key].shape == single[key].shape == (sum(len(c) for s in samples for c in s),)
        assert torch.allclose(tree[key], single[key], atol=1e-5), key


def test_the_train_section_schedule_and_warm_up_drive_the_learning_rate(tmp_path, tiny_dir, monkeypatch):
    """train.lr, schedule and warm-up as offline, over optimiser steps: 2 iterations x 2 passes of one
    minibatch (4 prompts x 2 samples = 8 = minibatch_size) is 4 steps; linear with 1 warm-up step gives
    lr x [0, 1, 2/3, 1/3] (transformers' linear schedule: s / w, then (S - s) / (S - w))."""
    from shiftalign.train import online

    used = []
    real = online.optimizer_step

    def recording(*args, **kwargs):
        grad_norm, lr = real(*args, **kwargs)
        used.append(lr)
        return grad_norm, lr

    monkeypatch.setattr(online, "optimizer_step", recording)
    recs = _run(tmp_path, tiny_dir, "rloo", iterations=2, name="sched", lr=0.03, sampling={"n": 2, "max_new_tokens": 4},
                train={"schedule": "linear", "warmup_steps": 1})
    assert used == pytest.approx([0.0, 0.03, 0.02, 0.01])
    assert [r["lr"] for r in recs] == pytest.approx([0.015, 0.015])  # the mean of each iteration's steps
    recs = _run(tmp_path, tiny_dir, "rloo", iterations=2, name="const", lr=0.03, sampling={"n": 2, "max_new_tokens": 4})
    assert used[4:] == pytest.approx([0.03] * 4)  # the rl default: constant, no warm-up


def test_resume_false_starts_over(tmp_path, tiny_dir, monkeypatch, capsys):
    """Interrupted after two iterations (a checkpoint at 2), rerun with train.resume false: every iteration
    runs again from the start, and the weights equal those of an uninterrupted run."""
    from safetensors.torch import load_file

    from shiftalign.train.online import RLTrainer

    keep = {"save_every": 2, "keep_optimizer_state": True}
    _run(tmp_path, tiny_dir, "ppo", iterations=4, name="straight", train=keep)
    restore = _stopped_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, tiny_dir, "ppo", iterations=4, name="again", train=keep)
    restore()
    assert (tmp_path / "again" / "checkpoints" / "step-00000002").is_dir()
    started = []
    real = RLTrainer.rollout
    monkeypatch.setattr(RLTrainer, "rollout", lambda self, it: started.append(it) or real(self, it))
    recs = _run(tmp_path, tiny_dir, "ppo", iterations=4, name="again", train={**keep, "resume": False})
    assert started == [0, 1, 2, 3] and [r["step"] for r in recs] == [1, 2, 3, 4]
    assert "starting over" in capsys.readouterr().out
    a = load_file(str(tmp_path / "straight" / "checkpoints" / "step-00000004" / "trainable.safetensors"))
    b = load_file(str(tmp_path / "again" / "checkpoints" / "step-00000004" / "trainable.safetensors"))
    assert all(torch_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("key, value, expected", [
    ("train", {"epochs": 3}, "train.epochs is not used by the rl recipe (epochs_per_rollout sets the passes"),
    ("train", {"batch_size": 32}, "train.batch_size is not used by the rl recipe"),
    ("train", {"max_steps": 5}, "train.max_steps is not used by the rl recipe (iterations sets the length"),
    ("epochs", 2, "epochs is now epochs_per_rollout"),
    ("lr", 1e-5, "lr is now train.lr"),
])
def test_offline_only_and_moved_keys_are_refused_by_name(tmp_path, key, value, expected, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"recipe": "rl", "prompts": "p.jsonl", key: value}))
    assert main(["config", str(cfg)]) == 2
    assert expected in capsys.readouterr().err
