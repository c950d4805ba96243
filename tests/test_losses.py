"""Loss math against hand-worked values."""

import math

import pytest
import torch

from shiftalign.losses import LOSSES
from shiftalign.losses.bradley_terry import bradley_terry_loss
from shiftalign.losses.dpo import dpo_loss
from shiftalign.losses.ipo import ipo_loss
from shiftalign.losses.kto import kto_loss
from shiftalign.losses.robust_dpo import robust_dpo_loss
from shiftalign.losses.sft import sft_loss
from shiftalign.losses.simpo import simpo_loss
from shiftalign.losses.slic import slic_loss

T = torch.tensor
SP1 = math.log1p(math.exp(-1))  # -log sigmoid(1) = 0.3132617
SPm1 = math.log1p(math.exp(1))  # -log sigmoid(-1) = 1.3132617


def test_dpo_equal_policy_and_reference_gives_log2():
    lp = torch.randn(5) * 10
    loss, _ = dpo_loss(lp, lp - 3, lp, lp - 3, beta=0.3)
    assert torch.allclose(loss, torch.full((5,), math.log(2)))


def test_dpo_hand_value_and_metrics():
    # chosen log-ratio +1, rejected log-ratio -1, beta 0.5 -> logit 1
    loss, m = dpo_loss(T([-4.0]), T([-6.0]), T([-5.0]), T([-5.0]), beta=0.5)
    assert loss.item() == pytest.approx(SP1, abs=1e-6)
    assert m["rewards/chosen"].item() == pytest.approx(0.5)
    assert m["rewards/rejected"].item() == pytest.approx(-0.5)
    assert m["accuracy"].item() == 1.0


def test_cdpo_label_smoothing():
    loss, _ = dpo_loss(T([-4.0]), T([-6.0]), T([-5.0]), T([-5.0]), beta=0.5, label_smoothing=0.1)
    assert loss.item() == pytest.approx(0.9 * SP1 + 0.1 * SPm1, abs=1e-6)


def test_robust_dpo():
    loss, _ = robust_dpo_loss(T([-4.0]), T([-6.0]), T([-5.0]), T([-5.0]), beta=0.5, label_smoothing=0.1)
    assert loss.item() == pytest.approx((0.9 * SP1 - 0.1 * SPm1) / 0.8, abs=1e-6)
    with pytest.raises(ValueError):
        robust_dpo_loss(T([0.0]), T([0.0]), T([0.0]), T([0.0]), label_smoothing=0.5)


def test_ipo():
    # h = 2; tau 0.25 -> target 2 -> loss 0; tau 0.5 -> target 1 -> loss 1
    assert ipo_loss(T([-4.0]), T([-6.0]), T([-5.0]), T([-5.0]), tau=0.25)[0].item() == pytest.approx(0.0)
    assert ipo_loss(T([-4.0]), T([-6.0]), T([-5.0]), T([-5.0]), tau=0.5)[0].item() == pytest.approx(1.0)


def test_simpo():
    # beta 2: chosen 2*(-4)/2 = -4, rejected 2*(-9)/3 = -6, gamma 1 -> logit 1
    loss, _ = simpo_loss(T([-4.0]), T([-9.0]), T([2.0]), T([3.0]), beta=2.0, gamma=1.0)
    assert loss.item() == pytest.approx(SP1, abs=1e-6)


def test_slic():
    # hinge 1 - (-4) + (-3.5) = 1.5; nll 4/2 = 2; 1.5 + 0.1*2
    loss, _ = slic_loss(T([-4.0]), T([-3.5]), T([2.0]), delta=1.0, lambda_reg=0.1)
    assert loss.item() == pytest.approx(1.7)
    loss, _ = slic_loss(T([-1.0]), T([-5.0]), T([2.0]), delta=1.0, lambda_reg=0.0)
    assert loss.item() == 0.0


def test_kto():
    # z0 = max(0, mean(0.5, -0.1)) = 0.2 (the step's mean mismatched log-ratio); r = (1.2, 0.2)
    loss, m = kto_loss(T([-1.0, -2.0]), T([-2.2, -2.2]), T(0.2), T([True, False]), beta=1.0)
    assert loss[0].item() == pytest.approx(1 - 1 / (1 + math.exp(-1.0)), abs=1e-6)
    assert loss[1].item() == pytest.approx(0.5, abs=1e-6)
    assert m["kl_reference_point"][0].item() == pytest.approx(0.2, abs=1e-6)
    # a negative estimate is clamped at zero: r = 0 gives exactly 1/2
    loss, m = kto_loss(T([-1.0]), T([-1.0]), T(-0.7), T([True]), beta=1.0)
    assert loss.item() == pytest.approx(0.5) and m["kl_reference_point"].item() == 0.0
    # the reference point carries no gradient
    z, r = T(0.3, requires_grad=True), T([-1.0, -1.0], requires_grad=True)
    kto_loss(r, T([-1.0, -1.0]), z, T([True, True]))[0].sum().backward()
    assert z.grad is None and r.grad is not None


def test_sft_token_mean():
    loss, _ = sft_loss(T([-6.0, -1.0]), T([3.0, 4.0]))
    assert torch.allclose(loss, T([2.0, 0.25]))


def test_bradley_terry():
    assert bradley_terry_loss(T([2.0]), T([1.0]))[0].item() == pytest.approx(SP1, abs=1e-6)
    assert bradley_terry_loss(T([2.0]), T([1.0]), margin=1.0)[0].item() == pytest.approx(math.log(2), abs=1e-6)


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_loss_is_per_example_and_finite(name):
    spec = LOSSES.get(name)
    B = 6
    k = 1 if spec.kind == "sft" else 2  # responses per row, fixed by the kind of rows the loss trains on
    out = {"logps": -torch.rand(B, k) * 20, "lengths": torch.randint(1, 9, (B, k)).float(),
           "ref_logps": -torch.rand(B, k) * 20, "rewards": torch.randn(B, 2),
           "labels": torch.tensor([True, False] * 3)}
    if spec.step_statistic is not None:
        out["step_mean"] = spec.step_statistic(out).mean()
    loss, metrics = spec.compute(out, spec.params())
    assert loss.shape == (B,) and torch.isfinite(loss).all()
    assert all(v.shape == (B,) for v in metrics.values())
