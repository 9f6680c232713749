"""LiVO and Diffusion-DPO losses against hand computations on fixed errors."""

import math

import pytest
import torch

from livo.errors import ConfigError
from livo.losses import dpo_loss, livo_loss


def errors(*rows: list[float]) -> list[torch.Tensor]:
    return [torch.tensor(row, dtype=torch.float64, requires_grad=True) for row in rows]


def test_livo_loss_equals_hand_computation_with_hinges_active_and_inactive() -> None:
    theta_w, ref_w, theta_l, ref_l = errors([0.10, 0.20], [0.12, 0.19], [0.31, 0.48], [0.32, 0.50])
    beta, alpha, gamma1, gamma2 = 100.0, 50.0, 1.0, 0.5
    # sample 0: winner term 1 + 100*(-0.02) = -1 -> inactive (0); loser term 0.5 + 50*0.01 = 1.0
    # sample 1: winner term 1 + 100*(+0.01) = 2.0;        loser term 0.5 + 50*0.02 = 1.5
    expected = ((0.0 + 1.0) + (2.0 + 1.5)) / 2
    loss, diagnostics = livo_loss(theta_w, ref_w, theta_l, ref_l, beta, alpha, gamma1, gamma2)
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    assert diagnostics["hinge_w"].item() == pytest.approx(1.0, abs=1e-12)
    assert diagnostics["hinge_l"].item() == pytest.approx(1.25, abs=1e-12)
    loss.backward()
    # Past its margin a hinge contributes no gradient.
    assert theta_w.grad.tolist() == pytest.approx([0.0, beta / 2])
    assert theta_l.grad.tolist() == pytest.approx([-alpha / 2, -alpha / 2])


def test_livo_loss_is_zero_when_both_margins_are_met() -> None:
    theta_w, ref_w, theta_l, ref_l = errors([0.0], [0.01], [0.03], [0.0])
    loss, _ = livo_loss(theta_w, ref_w, theta_l, ref_l, beta=1000, alpha=500)
    assert loss.item() == 0.0


def test_livo_defaults_are_the_published_ones() -> None:
    rows = errors([0.1, 0.2, 0.3], [0.1001, 0.1995, 0.3], [0.2, 0.3, 0.1], [0.2003, 0.2998, 0.1])
    default, _ = livo_loss(*rows)
    explicit, _ = livo_loss(*rows, beta=1000.0, alpha=500.0, gamma1=1.0, gamma2=0.5)
    by_hand = (
        sum(
            max(0.0, 1.0 + 1000 * (tw - rw)) + max(0.0, 0.5 + 500 * (rl - tl))
            for tw, rw, tl, rl in zip(*(r.tolist() for r in rows), strict=True)
        )
        / 3
    )
    assert default.item() == explicit.item()
    assert default.item() == pytest.approx(by_hand, abs=1e-9)


def test_diagnostics_report_mean_errors_and_implicit_accuracy() -> None:
    # sample 0: theta better on winner and worse on loser (counts); 1: only winner; 2: neither.
    theta_w, ref_w, theta_l, ref_l = errors([0.1, 0.1, 0.3], [0.2, 0.2, 0.2], [0.5, 0.1, 0.1], [0.4, 0.2, 0.2])
    _, diagnostics = livo_loss(theta_w, ref_w, theta_l, ref_l)
    assert diagnostics["implicit_acc"].item() == pytest.approx(1 / 3)
    assert diagnostics["err_theta_w"].item() == pytest.approx(0.5 / 3)
    assert diagnostics["err_ref_w"].item() == pytest.approx(0.2)
    assert diagnostics["err_theta_l"].item() == pytest.approx(0.7 / 3)
    assert diagnostics["err_ref_l"].item() == pytest.approx(0.8 / 3)
    assert all(value.grad_fn is None and not value.requires_grad for value in diagnostics.values())


def test_dpo_loss_equals_hand_computation() -> None:
    rows = errors([0.10, 0.30], [0.11, 0.29], [0.40, 0.20], [0.38, 0.21])
    beta_dpo = 50.0
    by_hand = 0.0
    for tw, rw, tl, rl in zip(*(r.tolist() for r in rows), strict=True):
        logit = -0.5 * beta_dpo * ((tw - rw) - (tl - rl))
        by_hand += -math.log(1 / (1 + math.exp(-logit)))
    loss, diagnostics = dpo_loss(*rows, beta_dpo=beta_dpo)
    assert loss.item() == pytest.approx(by_hand / 2, abs=1e-12)
    assert diagnostics["implicit_acc"].item() == pytest.approx(0.5)
    assert diagnostics["logit"].item() == pytest.approx(-0.5 * beta_dpo * ((-0.01 + 0.01) / 2 - (0.02 - 0.01) / 2))


def test_dpo_loss_follows_the_published_convention_on_fixed_tensors() -> None:
    # The reference implementation's form: model_diff = θ_w − θ_l, ref_diff = ref_w − ref_l,
    # loss = −log σ(−½ β (model_diff − ref_diff)), β = 5000 for SD 1.5. Here model_diff − ref_diff
    # = (0.1000 − 0.1010) − (0.1002 − 0.1008) = −0.0004, so the logit is ½ · 5000 · 0.0004 = 1 and the
    # loss is log(1 + e⁻¹) = 0.313261687518...
    rows = errors([0.1000], [0.1002], [0.1010], [0.1008])
    loss, diagnostics = dpo_loss(*rows, beta_dpo=5000.0)
    assert loss.item() == pytest.approx(0.3132616875182228, abs=1e-6)
    assert diagnostics["logit"].item() == pytest.approx(1.0, abs=1e-4)
    default, _ = dpo_loss(*rows)  # the default β_D is the published 5000
    assert default.item() == loss.item()


@pytest.mark.parametrize("loss_fn", [livo_loss, dpo_loss])
def test_errors_of_different_shapes_are_refused(loss_fn) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError, match="shape"):
        loss_fn(torch.zeros(2), torch.zeros(2), torch.zeros(3), torch.zeros(2))
