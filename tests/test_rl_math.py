"""RL math against hand-computed values."""

import math

import pytest
import torch

from shiftalign.ops.rl import gae, grpo_advantages, kl_k1, kl_k3, rloo_advantages, whiten

T = torch.tensor


def test_gae_hand_values():
    # one sequence of 3 tokens, gamma 0.5, lambda 0.5: rewards (0, 0, 1), values (0.1, 0.2, 0.3)
    r, v, m = T([[0.0, 0.0, 1.0]]), T([[0.1, 0.2, 0.3]]), T([[1.0, 1.0, 1.0]])
    adv, ret = gae(r, v, m, gamma=0.5, lam=0.5)
    d2 = 1.0 - 0.3
    d1 = 0.0 + 0.5 * 0.3 - 0.2
    d0 = 0.0 + 0.5 * 0.2 - 0.1
    a2, a1 = d2, d1 + 0.25 * d2
    a0 = d0 + 0.25 * a1
    assert torch.allclose(adv, T([[a0, a1, a2]]), atol=1e-6)
    assert torch.allclose(ret, adv + v, atol=1e-6)


def test_gae_respects_padding():
    r = T([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    v = T([[0.5, 0.5, 9.0], [0.0, 0.0, 0.0]])  # the 9 sits past the first sequence's end
    m = T([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    adv, _ = gae(r, v, m, gamma=1.0, lam=1.0)
    assert adv[0, 2] == 0
    assert adv[0, 1].item() == pytest.approx(1.0 - 0.5)  # no bootstrap from the padded 9
    assert adv[0, 0].item() == pytest.approx(0.0 + 0.5 - 0.5 + 0.5)


def test_rloo_and_grpo():
    s = T([[1.0, 2.0, 3.0, 6.0]])
    assert torch.allclose(rloo_advantages(s), T([[1 - 11 / 3, 2 - 10 / 3, 3 - 3.0, 6 - 2.0]]))
    g = grpo_advantages(s, eps=0.0)
    std = math.sqrt(((s - 3.0) ** 2).mean().item())
    assert torch.allclose(g, (s - 3.0) / std)
    with pytest.raises(ValueError):
        rloo_advantages(T([[1.0]]))


def test_kl_estimators():
    logp, ref = T([-1.0, -2.0]), T([-1.5, -1.0])
    assert torch.allclose(kl_k1(logp, ref), T([0.5, -1.0]))
    d = ref - logp
    assert torch.allclose(kl_k3(logp, ref), torch.exp(d) - 1 - d)
    assert (kl_k3(logp, ref) >= 0).all() and kl_k3(ref, ref).abs().max() == 0
    # Both estimate KL(p || q) without bias: check on a categorical distribution by exact expectation.
    p = torch.tensor([0.5, 0.3, 0.2])
    q = torch.tensor([0.2, 0.5, 0.3])
    exact = (p * (p / q).log()).sum()
    for est in (kl_k1, kl_k3):
        assert (p * est(p.log(), q.log())).sum().item() == pytest.approx(exact.item(), abs=1e-6)


def test_whiten():
    x, m = T([[1.0, 2.0, 3.0, 100.0]]), T([[1.0, 1.0, 1.0, 0.0]])
    w = whiten(x, m)
    assert (w * m).sum().item() == pytest.approx(0.0, abs=1e-5)
    assert ((w * m) ** 2).sum().item() / 3 == pytest.approx(1.0, abs=1e-4)


def test_vader_scorer_orders_sentiment():
    from shiftalign.rl.scorers import make_scorer

    score = make_scorer({"name": "vader"})
    good, neutral, bad = score(["q"] * 3, ["Happy to help, this is a great idea!", "The door is brown.",
                                           "This is awful and stupid."])
    assert good > 0.5 and abs(neutral) < 0.1 and bad < -0.5


def test_ppo_clipped_objective_hand_values():
    from shiftalign.rl import clipped_policy_loss

    # one token each: ratios e^0.5 = 1.649 (above 1 + 0.2), e^-0.5 = 0.607 (below 0.8), e^0.1 = 1.105 (inside)
    new = torch.tensor([[0.5], [-0.5], [0.1], [0.5]])
    old = torch.zeros(4, 1)
    adv = torch.tensor([[1.0], [1.0], [-2.0], [-1.0]])
    loss, clipfrac = clipped_policy_loss(new, old, adv, torch.ones(4, 1), clip=0.2)
    r = [math.exp(0.5), math.exp(-0.5), math.exp(0.1), math.exp(0.5)]
    want = [-1.2,                       # A > 0, ratio above 1.2: the clipped term -1.2 is the max
            -r[1] * 1.0,                # A > 0, ratio below 0.8: max(-0.607, -0.8) = -0.607, unclipped
            2.0 * r[2],                 # inside the range: -A ratio
            1.0 * r[3]]                 # A < 0, ratio above 1.2: max(1.649, 1.2) = 1.649, unclipped
    assert torch.allclose(loss, torch.tensor(want), atol=1e-6)
    assert clipfrac == pytest.approx(3 / 4)


def test_ppo_value_clipping_hand_values():
    from shiftalign.rl.ppo import PPOParams, loss

    p = PPOParams(value_clip=0.2, value_coef=1.0, entropy_coef=0.0)
    mask = torch.ones(2, 1)
    roll = {"mask": mask, "advantages": torch.zeros(2, 1), "logps_old": torch.zeros(2, 1),
            "values_old": torch.tensor([[0.0], [0.0]]), "returns": torch.tensor([[1.0], [1.0]])}
    new = {"logps": torch.zeros(2, 1), "entropy": torch.zeros(2, 1), "values": torch.tensor([[0.5], [0.1]])}
    total, _ = loss(new, roll, p, 0.0)
    # V = 0.5 moved past the clip: V_clip = 0.2, 1/2 max((0.5-1)^2, (0.2-1)^2) = 0.32
    # V = 0.1 inside: 1/2 (0.1 - 1)^2 = 0.405
    assert torch.allclose(total, torch.tensor([0.32, 0.405]), atol=1e-6)
    # without an entropy bonus the update needs no entropy (it is not computed); with one it enters the loss
    no_entropy = {k: v for k, v in new.items() if k != "entropy"}
    assert torch.equal(loss(no_entropy, roll, p, 0.0)[0], total)
    bonus = PPOParams(value_clip=0.2, value_coef=1.0, entropy_coef=0.5)
    with_entropy = {**new, "entropy": torch.tensor([[2.0], [1.0]])}
    assert torch.allclose(loss(with_entropy, roll, bonus, 0.0)[0], total - 0.5 * torch.tensor([2.0, 1.0]))


def test_adaptive_kl_controller_hand_values():
    from shiftalign.train.online import adapt_kl_coef

    assert adapt_kl_coef(0.1, 6.0, 100, 5.0, 1000) == pytest.approx(0.1 * (1 + 0.2 * 0.1))  # error 0.2
    assert adapt_kl_coef(0.1, 20.0, 100, 5.0, 1000) == pytest.approx(0.1 * 1.02)  # error 3 clipped to 0.2
    assert adapt_kl_coef(0.1, 0.0, 100, 5.0, 1000) == pytest.approx(0.1 * 0.98)  # error -1 clipped to -0.2
    assert adapt_kl_coef(0.1, 5.0, 100, 5.0, 1000) == pytest.approx(0.1)


def test_score_shaping_hand_values():
    from shiftalign.train.online import shape_scores
    from shiftalign.train.rl_config import RLConfig

    raw, eos, lengths = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 0.0, 1.0]), torch.tensor([10.0, 4.0, 2.0])
    cfg = RLConfig(missing_eos_penalty=1.5, length_penalty=0.1)
    assert torch.allclose(shape_scores(raw, eos, lengths, cfg), torch.tensor([1.0 - 1.0, 2.0 - 1.5 - 0.4, 3.0 - 0.2]))
    cfg.whiten_rewards = True
    got = shape_scores(raw, eos, lengths, cfg)
    x = torch.tensor([0.0, 0.1, 2.8])
    assert torch.allclose(got, (x - x.mean()) / x.std(unbiased=False), atol=1e-5)
    w = torch.tensor([1.0, 3.0, 0.0])  # a prompt of weight 0 leaves the statistics alone
    got = shape_scores(raw, eos, lengths, cfg, w)
    # weighted mean (0 + 3 * 0.1) / 4 = 0.075, variance (0.075^2 + 3 * 0.025^2) / 4 = 0.001875
    assert torch.allclose(got[:2], torch.tensor([-(3 ** 0.5), 3 ** -0.5]), atol=1e-4)
    assert torch.allclose(shape_scores(raw, eos, lengths, RLConfig()), raw)  # no penalty by default


def test_readability_gold_is_flesch_reading_ease_over_100():
    from shiftalign.rl.scorers import flesch_reading_ease, make_scorer

    one = lambda w: 1  # noqa: E731
    # 6 words, 2 sentences, 6 syllables: 206.835 - 1.015 * 3 - 84.6 * 1
    assert flesch_reading_ease("The cat sat. The dog ran.", one) == pytest.approx(119.19)
    assert flesch_reading_ease("...", one) is None
    score = make_scorer({"name": "readability"})
    plain, dense = score(["q", "q"], ["The cat sat. The dog ran.", "Organisational considerations necessitate "
                                                                   "comprehensive evaluation of interdependencies"])
    assert plain == pytest.approx(1.1919) and dense < 0  # every word of `plain` has one syllable
    assert score(["q"], [""]) == [0.0]


def test_plain_language_gold_scores_nonsense_low_and_plain_sentences_high():
    """Readable and well-formed: the degenerate replies DPO found on the readability gold (repetition,
    letter strings, fragments; each scores above 0.97 there) score low, a plain answer near 1, and every
    factor is the one the definition names."""
    from shiftalign.rl.scorers import make_scorer, plain_language, well_formed

    score = make_scorer({"name": "plain_language"})
    readability = make_scorer({"name": "readability"})
    plain = "To clean your windows, mix warm water with a little soap. Wipe the glass with a soft cloth, then dry it."
    nonsense = ["No! Thanks. You got it. You got it. You got it. You got it. You got it.",
                "A-m-a-l-h-w-w-w-w-w-w-w-w-w-w-w-w-w-w-w-w-w-", "Bake. New. Old. We got. You got. You got!"]
    got = score(["q"] * 4, [plain] + nonsense)
    assert got[0] > 0.9 and max(got[1:]) < 0.2
    assert min(readability(["q"] * 3, nonsense)) > 0.97
    assert all(0 <= x <= 1 for x in got) and score(["q"], [""]) == [0.0]
    one = lambda w: 1  # noqa: E731
    # "The cat sat. The dog ran.": ease 119, clipped to 100 -> 1; its 5 bigrams are distinct; every word is
    # well formed; 3 words per sentence -> 0.5. "Go go go go go go.": 1 distinct bigram of 5.
    assert plain_language("The cat sat. The dog ran.", one) == pytest.approx(1.0 * 1.0 * 1.0 * 0.5)
    assert plain_language("Go go go go go go.", one) == pytest.approx(1.0 * (1 / 5) * 1.0 * 1.0)
    assert [well_formed(w) for w in ("a", "I", "cat", "zzz", "w", "kuuuul", "rhythm", "don't")] == \
        [True, True, True, False, False, False, True, True]


def test_random_scorer_is_a_seeded_coin():
    from shiftalign.rl.scorers import make_scorer

    a, b = make_scorer({"name": "random", "seed": 0}), make_scorer({"name": "random", "seed": 1})
    responses = [f"reply {i}" for i in range(2000)]
    x = a(["q"] * 2000, responses)
    assert x == a(["q"] * 2000, responses) and x != b(["q"] * 2000, responses)
    assert all(0 <= v < 1 for v in x) and abs(sum(v > 0.5 for v in x) / 2000 - 0.5) < 0.05
