"""rollout.decode on a tiny random model: greedy equals transformers' generate, log-probs equal a full
forward pass, draws follow the tempered and truncated distribution, and the RL rollout's pi_old from
the sampling pass equals a fresh forward pass."""

import pytest
import torch

from shiftalign.models.tiny import tiny_causal_lm
from shiftalign.rollout.decode import decode, draw, truncate
from shiftalign.rollout.generate import generate_hf
from shiftalign.rollout.params import SamplingParams


@pytest.fixture(scope="module")
def lm():
    model, tok = tiny_causal_lm(seed=3)
    return model.eval(), tok


def _prompts(tok):
    texts = ["hello", "the quick brown fox jumps", "a good answer is short"]  # lengths differ: left padding
    return [tok(t, add_special_tokens=False)["input_ids"] for t in texts]


def _full_forward(model, prompt, completion, temperature=1.0):
    """Per-token log-probs and entropies of ``completion`` after ``prompt`` from one unpadded forward pass."""
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        lsm = (model(ids).logits[0, len(prompt) - 1:-1].float() / temperature).log_softmax(-1)
    return lsm.gather(-1, ids[0, len(prompt):, None])[:, 0], -(lsm.exp() * lsm).sum(-1)


def test_greedy_equals_transformers_generate(lm):
    model, tok = lm
    p = SamplingParams(n=1, max_new_tokens=10, temperature=0)
    mine = decode(model, _prompts(tok), p, 0, tok.pad_token_id, tok.eos_token_id)
    ref = generate_hf(model, tok, _prompts(tok), p, 0)
    for a, b in zip(mine, ref):
        assert a[0]["completion_ids"] == b[0]["completion_ids"]
        assert a[0]["logp"] == pytest.approx(b[0]["logp"], abs=1e-4)


def test_sampled_log_probs_equal_a_full_forward_pass(lm):
    model, tok = lm
    p = SamplingParams(n=3, max_new_tokens=12, temperature=0.7)
    out = decode(model, _prompts(tok), p, 5, tok.pad_token_id, tok.eos_token_id, tempered=True)
    for prompt, samples in zip(_prompts(tok), out):
        assert len(samples) == 3
        for s in samples:
            raw, _ = _full_forward(model, prompt, s["completion_ids"])
            assert s["logp"] == pytest.approx(raw.sum().item(), abs=1e-4)
            tempered, entropy = _full_forward(model, prompt, s["completion_ids"], 0.7)
            torch.testing.assert_close(s["token_logps"], tempered, atol=1e-5, rtol=0)
            torch.testing.assert_close(s["token_entropy"], entropy, atol=1e-5, rtol=0)
            assert s["finished"] == (tok.eos_token_id in s["completion_ids"])
            assert tok.eos_token_id not in s["completion_ids"][:-1]  # stops at the first EOS


def test_prompt_computed_once_gives_the_samples_of_repeated_prompts(lm):
    """n samples of a prompt share its prefill; the draws and log-probs are those of the prompt repeated n times."""
    model, tok = lm
    shared = decode(model, _prompts(tok), SamplingParams(n=3, max_new_tokens=10, temperature=1.0), 7,
                    tok.pad_token_id, tok.eos_token_id)
    repeated = decode(model, [q for q in _prompts(tok) for _ in range(3)],
                      SamplingParams(n=1, max_new_tokens=10, temperature=1.0), 7, tok.pad_token_id, tok.eos_token_id)
    flat = [s for samples in shared for s in samples]
    assert [s["completion_ids"] for s in flat] == [r[0]["completion_ids"] for r in repeated]
    assert [s["logp"] for s in flat] == pytest.approx([r[0]["logp"] for r in repeated], abs=1e-5)


def test_same_seed_same_samples_other_seed_other_samples(lm):
    model, tok = lm
    p = SamplingParams(n=4, max_new_tokens=8, temperature=1.0)
    run = lambda seed: [s["completion_ids"] for ss in decode(model, _prompts(tok), p, seed, tok.pad_token_id,  # noqa: E731
                                                              tok.eos_token_id) for s in ss]
    assert run(1) == run(1) and run(1) != run(2)


def test_with_a_seed_per_prompt_a_prompt_draws_the_same_samples_in_any_batch(lm):
    model, tok = lm
    p = SamplingParams(n=3, max_new_tokens=8, temperature=1.0)
    prompts = _prompts(tok)
    seeds = [11 + i for i in range(len(prompts))]
    together = decode(model, prompts, p, seeds, tok.pad_token_id, tok.eos_token_id)
    for i in range(len(prompts)):  # alone, or with the prompts in another order
        alone = decode(model, [prompts[i]], p, [seeds[i]], tok.pad_token_id, tok.eos_token_id)[0]
        assert [s["completion_ids"] for s in alone] == [s["completion_ids"] for s in together[i]]
    backwards = decode(model, prompts[::-1], p, seeds[::-1], tok.pad_token_id, tok.eos_token_id)[::-1]
    assert [[s["completion_ids"] for s in ss] for ss in backwards] == [[s["completion_ids"] for s in ss] for ss in together]
    other = decode(model, prompts, p, [s + 100 for s in seeds], tok.pad_token_id, tok.eos_token_id)
    assert [[s["completion_ids"] for s in ss] for ss in other] != [[s["completion_ids"] for s in ss] for ss in together]


def test_draws_follow_the_distribution():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05, 0.0])
    logits = probs.clamp(min=1e-30).log().expand(40_000, -1)
    gen = torch.Generator().manual_seed(0)
    counts = torch.bincount(draw(logits, gen), minlength=5).float() / 40_000
    torch.testing.assert_close(counts, probs, atol=0.01, rtol=0)
    assert counts[4] == 0  # a token of probability 0 is never drawn


def test_truncation_equals_transformers_warpers():
    from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

    torch.manual_seed(0)
    scaled = torch.randn(64, 50) * 2
    for k in (1, 5, 20):
        ref = TopKLogitsWarper(k)(None, scaled.clone())
        assert torch.equal(truncate(scaled, k, 1.0).isinf(), ref.isinf())
    for top_p in (0.1, 0.5, 0.9, 0.99):
        ref = TopPLogitsWarper(top_p)(None, scaled.clone())
        assert torch.equal(truncate(scaled, 0, top_p).isinf(), ref.isinf())
    kept = (~truncate(torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log(), 0, 0.8).isinf()).sum().item()
    assert kept == 2  # the smallest set whose probability reaches 0.8


def test_rl_rollout_old_log_probs_from_sampling_equal_a_forward_pass(tmp_path, tiny_dir):
    from accelerate import Accelerator

    from shiftalign.config import from_dict
    from shiftalign.train.online import RLTrainer
    from shiftalign.train.rl_config import RLConfig

    from conftest import write_jsonl

    prompts = write_jsonl(tmp_path / "p.jsonl", [{"id": f"q{i}", "prompt": f"what is {i}"} for i in range(4)])
    cfg = from_dict(RLConfig, {"output_dir": str(tmp_path / "rl"), "model": {"path": tiny_dir}, "prompts": prompts,
                               "algorithm": {"name": "rloo"}, "scorer": {"name": "random"},
                               "sampling": {"n": 2, "max_new_tokens": 8, "temperature": 0.8},
                               "prompts_per_iteration": 4, "train": {"progress": False}})
    trainer = RLTrainer(cfg, Accelerator(cpu=True))
    assert trainer.rollout_logps_exact
    from_sampling, items, _ = trainer.rollout(0)
    trainer.rollout_logps_exact = False
    recomputed, items2, _ = trainer.rollout(0)  # same seed: the same samples, pi_old from a forward pass
    assert [i.completion_ids for i in items] == [i.completion_ids for i in items2]
    for key in ("logps_old", "kl", "mask"):
        torch.testing.assert_close(from_sampling[key], recomputed[key], atol=1e-5, rtol=0)


def test_decode_through_a_lora_wrapper(lm):
    """A PEFT model passes the cache through to the model it wraps: with the adapter at its initial value
    (B = 0) greedy decoding gives the base model's tokens and log-probs."""
    from peft import LoraConfig, get_peft_model

    model, tok = lm
    p = SamplingParams(n=1, max_new_tokens=10, temperature=0)
    base = decode(model, _prompts(tok), p, 0, tok.pad_token_id, tok.eos_token_id)
    wrapped = get_peft_model(tiny_causal_lm(seed=3)[0], LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    lora = decode(wrapped.eval(), _prompts(tok), p, 0, tok.pad_token_id, tok.eos_token_id)
    assert [s[0]["completion_ids"] for s in lora] == [s[0]["completion_ids"] for s in base]
    assert [s[0]["logp"] for s in lora] == pytest.approx([s[0]["logp"] for s in base], abs=1e-5)
