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
