"""`shiftalign evaluate` on tiny models with a python gold scorer: exact KL, win rate, reward-model
accuracy, and caches that follow the content of the models and the sampling settings."""

import itertools
import json
import math

import numpy as np
import pytest
import torch
import yaml

import shiftalign.recipes.evaluate as ev_mod
from shiftalign.cli import main
from shiftalign.metrics import chosen_accuracy, pair_accuracy
from shiftalign.ops.kl import tempered_token_kl
from shiftalign.recipes.evaluate import paired_bootstrap

from conftest import write_jsonl


def test_paired_bootstrap():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    d, lo, hi = paired_bootstrap(a, a - 0.5, 500, 0)
    assert d == pytest.approx(0.5) and lo == pytest.approx(0.5) and hi == pytest.approx(0.5)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=200), rng.normal(size=200) + 0.6
    d, lo, hi = paired_bootstrap(y, x, 2000, 0)
    assert lo < d < hi and lo > 0  # a shift of 0.6 (standard error 0.1) excludes zero


def _categorical_kl(p, q, t):
    pt = [x ** (1 / t) for x in p]
    qt = [x ** (1 / t) for x in q]
    pt, qt = [x / sum(pt) for x in pt], [x / sum(qt) for x in qt]
    return sum(a * math.log(a / b) for a, b in zip(pt, qt))


@pytest.mark.parametrize("t", [0.7, 1.0])
def test_tempered_kl_is_exact_on_a_categorical_case(t):
    pi, base = [0.3, 0.7], [0.2, 0.8]
    got = tempered_token_kl(torch.tensor([pi]).log(), torch.tensor([base]).log(), t)
    assert got.item() == pytest.approx(_categorical_kl(pi, base, t), rel=1e-5)
    if t == 1.0:
        assert got.item() == pytest.approx(0.3 * math.log(1.5) + 0.7 * math.log(0.875), rel=1e-5)  # 0.0282
    # the sampled-token estimate the old evaluation used: E_{pi_T}[log pi - log base] with untempered log-probs
    p_t = [x ** (1 / t) / sum(y ** (1 / t) for y in pi) for x in pi]
    k1 = sum(a * (math.log(x) - math.log(y)) for a, x, y in zip(p_t, pi, base))
    if t == 0.7:
        assert k1 < 0 < got.item()  # -0.0098: not a KL at all


def test_pair_accuracy_hand_values():
    # prompt a: gold orders 0 < 1 < 2, scores agree on (0,1) and (0,2), disagree on (1,2); prompt b: a score tie
    acc, n = pair_accuracy(np.array([0.0, 1.0, 0.5, 3.0, 3.0]), np.array([0.1, 0.2, 0.3, 1.0, 0.0]),
                           ["a", "a", "a", "b", "b"])
    assert n == 4 and acc == pytest.approx((1 + 1 + 0 + 0.5) / 4)
    assert pair_accuracy(np.array([1.0, 2.0]), np.array([0.5, 0.5]), ["a", "a"]) == (None, 0)
    # best_vs_worst keeps one pair per prompt: a's (2, 0), ordered right; b's tie counts 1/2
    acc, n = pair_accuracy(np.array([0.0, 1.0, 0.5, 3.0, 3.0]), np.array([0.1, 0.2, 0.3, 1.0, 0.0]),
                           ["a", "a", "a", "b", "b"], "best_vs_worst")
    assert n == 2 and acc == pytest.approx((1 + 0.5) / 2)


def test_chosen_accuracy_hand_values():
    # right, wrong, tie (1/2), right
    assert chosen_accuracy(np.array([2.0, 0.0, 1.0, 5.0]), np.array([1.0, 1.0, 1.0, -5.0])) == pytest.approx(2.5 / 4)


def _next_token_kl(p_path, base_path, prompts, t):
    """Exact KL of the first response token's distributions, averaged over prompts, from the HF models."""
    from shiftalign.config import ModelConfig
    from shiftalign.models.load import load_policy

    (p, tok), (b, _) = load_policy(ModelConfig(path=p_path)), load_policy(ModelConfig(path=base_path))
    kls = []
    with torch.no_grad():
        for x in prompts:
            ids = torch.tensor([tok(x, add_special_tokens=False)["input_ids"]])
            kls.append(tempered_token_kl(p(ids).logits[0, -1:], b(ids).logits[0, -1:], t).item())
    return float(np.mean(kls))


def _policies(tmp_path):
    from transformers import AutoModelForCausalLM

    from shiftalign.models.tiny import save_tiny

    p0, p1 = save_tiny(tmp_path / "p0", seed=0), save_tiny(tmp_path / "p1", seed=1)
    sharp = AutoModelForCausalLM.from_pretrained(p1)
    with torch.no_grad():  # a random tiny model is near-uniform; sharpen one so the two policies differ clearly
        sharp.lm_head.weight.mul_(40)
    sharp.save_pretrained(p1)
    return p0, p1


def _run(tmp_path, cfg):
    (tmp_path / "e.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["evaluate", str(tmp_path / "e.yaml")]) == 0
    return json.loads((tmp_path / "ev" / "evaluation.json").read_text())


@pytest.mark.parametrize("t,backend", [(0.7, "decode"), (1.0, "decode"), (0.7, "hf")])
def test_evaluation_kl_is_the_exact_kl_of_the_sampling_distributions(tmp_path, t, backend):
    # one new token per response: the sequence KL is the KL of the first token's distribution, known exactly.
    # decode reads the policy's terms from its sampling pass (rollout.kl), hf runs both models (sequence_kls)
    p0, p1 = _policies(tmp_path)
    texts = [f"what is {i}" for i in range(4)]
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"id": f"q{i}", "prompt": x} for i, x in enumerate(texts)])
    cfg = {"prompts": prompts, "policies": {"initial": p0, "other": p1}, "baseline": "initial", "backend": backend,
           "gold": {"name": "vader"}, "sampling": {"n": 3, "max_new_tokens": 1, "temperature": t},
           "output_dir": str(tmp_path / "ev"), "bootstrap": 200, "progress": False}
    res = _run(tmp_path, cfg)["policies"]
    want = _next_token_kl(p1, p0, texts, t)
    assert want > 0.05
    assert res["other"]["kl_to_baseline"] == pytest.approx(want, rel=1e-4)
    lo, hi = res["other"]["kl_to_baseline_ci95"]
    assert 0 <= lo <= res["other"]["kl_to_baseline"] <= hi
    assert res["initial"]["kl_to_baseline"] == 0.0


def test_sequence_kls_of_samples_sharing_a_prompt_equal_one_forward_per_sample(tmp_path):
    """Samples of a prompt go through the models as branches of one row; each sample's KL equals the one
    computed from its own prompt + response forward, whatever the number of samples per prompt and batch."""
    from shiftalign.config import ModelConfig
    from shiftalign.models.load import load_policy

    p0, p1 = _policies(tmp_path)
    (p, tok), (b, _) = load_policy(ModelConfig(path=p1)), load_policy(ModelConfig(path=p0))
    rng = np.random.default_rng(0)
    rows = [{"id": f"{q}-{j}", "prompt_id": q, "prompt": f"what is {q}",
             "completion_ids": rng.integers(3, 40, size=int(rng.integers(1, 7))).tolist()}
            for q, n in [("a", 3), ("b", 3), ("c", 1), ("d", 2), ("e", 3)] for j in range(n)]
    want = []
    with torch.no_grad():
        for r in rows:
            prompt = tok(r["prompt"], add_special_tokens=False)["input_ids"]
            ids = torch.tensor([prompt + r["completion_ids"]])
            at = slice(len(prompt) - 1, ids.shape[1] - 1)  # the positions that predict the response
            want.append(tempered_token_kl(p(ids).logits[0, at], b(ids).logits[0, at], 0.7).sum().item())
    for per_batch in (4, 16):
        got = ev_mod.sequence_kls(p1, p0, rows, False, 0.7, branches_per_batch=per_batch)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_kl_read_during_sampling_equals_the_two_forward_pass(tmp_path):
    """Multi-token samples of several prompts, some ending at EOS: each sample's ``kl`` from the decode loop's
    logits and one baseline forward (rollout.kl) equals ``sequence_kls`` (both models run over the samples)."""
    from transformers import AutoModelForCausalLM

    from shiftalign.config import ModelConfig
    from shiftalign.io import read_jsonl
    from shiftalign.rollout.params import SamplingParams
    from shiftalign.rollout.sample import SampleConfig
    from shiftalign.rollout.sample import main as sample_main

    p0, p1 = _policies(tmp_path)
    m = AutoModelForCausalLM.from_pretrained(p1)
    with torch.no_grad():  # EOS about as likely as the policy's favourite token: some responses stop early
        top = m(torch.tensor([[5, 6, 7]])).logits[0, -1].argmax()
        m.lm_head.weight[m.config.eos_token_id] = m.lm_head.weight[top]
    m.save_pretrained(p1)
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"id": f"q{i}", "prompt": f"what is {i} " * (1 + i % 3)}
                                                 for i in range(7)])
    for t in (0.7, 0.0):
        sc = SampleConfig(prompts=prompts, output=str(tmp_path / f"s{t}.jsonl"), policy=ModelConfig(path=p1),
                          sampling=SamplingParams(n=3, max_new_tokens=6, temperature=t, seed=1), batch_size=6,
                          kl_to=p0, progress=False)
        rows = read_jsonl(sample_main(sc))
        assert len(rows) == 21 and {r["kl_to"] for r in rows} == {p0}
        assert len({r["n_tokens"] for r in rows}) > 1  # responses of several lengths
        want = ev_mod.sequence_kls(p1, p0, rows, False, t if t > 0 else 1.0)
        np.testing.assert_allclose([r["kl"] for r in rows], want, rtol=1e-4, atol=1e-6)
        assert min(want) > 0
    with pytest.raises(Exception, match="kl_to: the hf backend does not read the KL"):
        sample_main(SampleConfig(prompts=prompts, output=str(tmp_path / "h.jsonl"), policy=ModelConfig(path=p1),
                                 backend="hf", kl_to=p0, progress=False))


def test_evaluate_policies(tmp_path):
    from shiftalign.models.tiny import save_tiny
    from shiftalign.rl.scorers import make_scorer, reward_model_scorer

    p0, p1 = _policies(tmp_path)
    rm = save_tiny(tmp_path / "rm", seed=2, reward=True)
    (tmp_path / "gold.py").write_text("def g(prompts, responses):\n    return [r.count('o') / max(len(r), 1) "
                                      "for r in responses]\n")
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"id": f"q{i}", "prompt": f"what is {i}"} for i in range(6)])
    gold = {"name": "python", "function": f"{tmp_path / 'gold.py'}:g"}
    # backend hf: the KL pass runs both models (sequence_kls), whose calls the cache checks below count
    cfg = {"prompts": prompts, "policies": {"initial": p0, "other": p1}, "baseline": "initial", "gold": gold,
           "reward_model": rm, "backend": "hf", "sampling": {"n": 3, "max_new_tokens": 8}, "output_dir": str(tmp_path / "ev"),
           "bootstrap": 200, "progress": False}
    res = _run(tmp_path, cfg)
    init, other = res["policies"]["initial"], res["policies"]["other"]
    assert res["prompts"] == 6
    assert init["win_rate_vs_baseline"] == 0.5 and init["kl_to_baseline"] == 0.0  # a policy against itself
    assert init["gold_diff_vs_initial"] == 0.0 and init["gold_diff_vs_initial_ci95"] == [0.0, 0.0]
    lo, hi = other["gold_diff_vs_initial_ci95"]
    assert lo <= other["gold_diff_vs_initial"] <= hi
    assert other["kl_to_baseline"] > 0.1  # two clearly different models
    # reward-model accuracy, recomputed independently from the samples file
    rows = [json.loads(line) for line in (tmp_path / "ev" / "samples" / "other.jsonl").read_text().splitlines()]
    g = make_scorer(gold)([r["prompt"] for r in rows], [r["completion"] for r in rows])
    s = reward_model_scorer(rm)([r["prompt"] for r in rows], [r["completion"] for r in rows])
    pairs = [(i, j) for i, j in itertools.combinations(range(len(rows)), 2)
             if rows[i]["prompt_id"] == rows[j]["prompt_id"] and g[i] != g[j]]
    assert len(pairs) == other["reward_model_pairs"] > 0
    hits = sum(0.5 if s[i] == s[j] else float((s[i] > s[j]) == (g[i] > g[j])) for i, j in pairs)
    assert other["reward_model_accuracy"] == pytest.approx(hits / len(pairs))

    # A rerun with one more policy computes model metrics for that policy only; the others come from the cache.
    calls = []
    real = ev_mod.sequence_kls
    ev_mod.sequence_kls = lambda path, base, *a: calls.append(path) or real(path, base, *a)
    try:
        cfg["policies"]["third"] = p1
        again = _run(tmp_path, cfg)["policies"]
        assert calls == [p1]  # one KL pass: the new policy's, against the baseline
        assert again["other"]["kl_to_baseline"] == other["kl_to_baseline"] and "third" in again

        # The model at p1's path is retrained (other weights, same path): its samples and metrics are redone.
        from transformers import AutoModelForCausalLM

        m = AutoModelForCausalLM.from_pretrained(p1)
        with torch.no_grad():
            m.lm_head.weight.mul_(0.5)
        m.save_pretrained(p1)
        calls.clear()
        before = (tmp_path / "ev" / "samples" / "other.jsonl").read_text()
        third = _run(tmp_path, cfg)["policies"]
        assert sorted(calls) == [p1, p1]  # both policies at that path, none for the baseline
        assert (tmp_path / "ev" / "samples" / "other.jsonl").read_text() != before
        assert third["other"]["kl_to_baseline"] != other["kl_to_baseline"]

        # Another temperature: every policy is sampled again.
        calls.clear()
        cfg["sampling"]["temperature"] = 0.5
        _run(tmp_path, cfg)
        assert sorted(calls) == [p1, p1]
        rows = [json.loads(line) for line in (tmp_path / "ev" / "samples" / "initial.jsonl").read_text().splitlines()]
        assert {r["sampling"]["temperature"] for r in rows} == {0.5}

        # Another gold, same config and same file path, other content: the cached reward-model accuracy was
        # measured against the old gold, so it is recomputed against the new one (the samples are kept).
        (tmp_path / "gold.py").write_text("def g(prompts, responses):\n"
                                          "    return [float(len(set(r))) for r in responses]\n")
        rm_calls = []
        real_rm = ev_mod.rm_accuracy
        ev_mod.rm_accuracy = lambda c, rows, g: rm_calls.append(len(rows)) or real_rm(c, rows, g)
        try:
            before = (tmp_path / "ev" / "samples" / "other.jsonl").read_text()
            regold = _run(tmp_path, cfg)["policies"]["other"]
        finally:
            ev_mod.rm_accuracy = real_rm
        assert len(rm_calls) == 3 and (tmp_path / "ev" / "samples" / "other.jsonl").read_text() == before
        rows = [json.loads(line) for line in before.splitlines()]
        g = make_scorer(gold)([r["prompt"] for r in rows], [r["completion"] for r in rows])
        s = reward_model_scorer(rm)([r["prompt"] for r in rows], [r["completion"] for r in rows])
        assert (regold["reward_model_accuracy"], regold["reward_model_pairs"]) == \
            pytest.approx(pair_accuracy(np.array(s), np.array(g), [r["prompt_id"] for r in rows]))
    finally:
        ev_mod.sequence_kls = real


def test_two_level_bootstrap_covers_seed_spread_and_reduces_to_the_paired_bootstrap():
    from shiftalign.experiment.seeds import seed_spread, two_level_bootstrap
    from shiftalign.recipes.evaluate import paired_bootstrap

    rng = np.random.default_rng(0)
    prompts = rng.normal(size=40)
    a1, b1 = prompts + 0.1 + rng.normal(0, 0.1, 40), prompts + rng.normal(0, 0.1, 40)
    d, lo, hi = two_level_bootstrap(a1[None], b1[None], 4000, 0)
    d2, lo2, hi2 = paired_bootstrap(a1, b1, 4000, 0)
    assert d == pytest.approx(d2) and lo == pytest.approx(lo2, abs=0.01) and hi == pytest.approx(hi2, abs=0.01)
    # three replicates whose means differ by seed: the interval widens to cover the seed-to-seed spread
    shifts = np.array([-0.3, 0.0, 0.3])[:, None]
    a3 = prompts + 0.1 + shifts + rng.normal(0, 0.1, (3, 40))
    b3 = prompts + rng.normal(0, 0.1, (3, 40))
    d3, lo3, hi3 = two_level_bootstrap(a3, b3, 4000, 0)
    assert hi3 - lo3 > 3 * (hi - lo) and lo3 < d3 < hi3
    assert seed_spread(a3) == pytest.approx(0.3, abs=0.05) and seed_spread(a1) is None


def test_family_wise_intervals_widen_with_independent_arms_and_not_with_copies():
    """Max-|t| over the arms: 10 independent arms need the Sidak critical value (~2.80 for 95 %), about 1.43x
    the single-arm half-width; 10 copies of one arm are one comparison (1.96); one arm is the ordinary one."""
    from shiftalign.experiment.statistics import differences, simultaneous_differences

    rng = np.random.default_rng(1)
    base = rng.normal(size=(1, 60))
    arms = {f"a{k}": base + 0.05 + rng.normal(0, 0.2, (1, 60)) for k in range(10)}

    def half(d):
        return (d.hi - d.lo) / 2

    single = {k: half(d) for k, d in differences({**arms, "base": base}, "base").items() if k != "base"}
    family = simultaneous_differences({**arms, "base": base}, "base", list(arms), n=4000)
    ratios = [half(family[k]) / single[k] for k in arms]
    assert 1.3 < np.mean(ratios) < 1.55, ratios
    for k, v in arms.items():  # centred on the point estimate
        assert (family[k].lo + family[k].hi) / 2 == pytest.approx(v.mean() - base.mean(), abs=1e-9)
    copies = {f"c{k}": arms["a0"] for k in range(10)}
    fam_copies = simultaneous_differences({**copies, "base": base}, "base", list(copies), n=4000)
    assert half(fam_copies["c3"]) / single["a0"] == pytest.approx(1.0, abs=0.08)
    one = simultaneous_differences({"a0": arms["a0"], "base": base}, "base", ["a0"], n=4000)
    assert half(one["a0"]) / single["a0"] == pytest.approx(1.0, abs=0.08)
