"""LiVO's loss and the Diffusion-DPO baseline, as pure functions of per-sample denoising errors.

Inputs are four tensors of shape ``(batch,)`` (see ``livo.models.denoising.pair_errors``): the errors
of the trained model θ and of the frozen reference on the aligned image (winner, w) and on the
violating image (loser, l). Lower error = the model finds the image more likely.

LiVO (hinges push θ below the reference on w and above it on l, each up to a margin)::

    L = mean[ max(0, γ1 + β (θ_w − ref_w)) + max(0, γ2 + α (ref_l − θ_l)) ]

Diffusion-DPO (Wallace et al. 2024), in the convention of its reference implementation and of
diffusers' training example (the 0.5 factor; β_D = 5000 for SD 1.5), so that a published ``beta_dpo``
means the same strength here::

    L = mean[ −log σ(−½ β_D ((θ_w − ref_w) − (θ_l − ref_l))) ]

Both return ``(loss, diagnostics)``; diagnostics are detached 0-d tensors (no device sync until the
caller reads them): the four mean errors, LiVO's two mean hinge terms or DPO's mean logit, and the
implicit accuracy = share of samples where θ beats the reference on w *and* loses to it on l.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from livo.errors import ConfigError

LIVO_DEFAULTS = {"beta": 1000.0, "alpha": 500.0, "gamma1": 1.0, "gamma2": 0.5}
DPO_DEFAULT_BETA = 5000.0


def _check(
    err_theta_w: torch.Tensor, err_ref_w: torch.Tensor, err_theta_l: torch.Tensor, err_ref_l: torch.Tensor
) -> None:
    shapes = {tuple(t.shape) for t in (err_theta_w, err_ref_w, err_theta_l, err_ref_l)}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise ConfigError(f"errors: expected four tensors of shape (batch,), got shapes {sorted(shapes)}")


def _common_diagnostics(
    err_theta_w: torch.Tensor, err_ref_w: torch.Tensor, err_theta_l: torch.Tensor, err_ref_l: torch.Tensor
) -> dict[str, torch.Tensor]:
    implicit = ((err_theta_w < err_ref_w) & (err_theta_l > err_ref_l)).float().mean()
    return {
        "err_theta_w": err_theta_w.detach().mean(),
        "err_ref_w": err_ref_w.detach().mean(),
        "err_theta_l": err_theta_l.detach().mean(),
        "err_ref_l": err_ref_l.detach().mean(),
        "implicit_acc": implicit.detach(),
    }


def livo_loss(
    err_theta_w: torch.Tensor,
    err_ref_w: torch.Tensor,
    err_theta_l: torch.Tensor,
    err_ref_l: torch.Tensor,
    beta: float = LIVO_DEFAULTS["beta"],
    alpha: float = LIVO_DEFAULTS["alpha"],
    gamma1: float = LIVO_DEFAULTS["gamma1"],
    gamma2: float = LIVO_DEFAULTS["gamma2"],
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """LiVO's hinge loss (defaults β=1000, α=500, γ1=1, γ2=0.5) and its diagnostics
    (adds ``hinge_w`` and ``hinge_l``, the batch means of the two hinge terms)."""
    _check(err_theta_w, err_ref_w, err_theta_l, err_ref_l)
    hinge_w = F.relu(gamma1 + beta * (err_theta_w - err_ref_w))
    hinge_l = F.relu(gamma2 + alpha * (err_ref_l - err_theta_l))
    loss = (hinge_w + hinge_l).mean()
    diagnostics = _common_diagnostics(err_theta_w, err_ref_w, err_theta_l, err_ref_l)
    diagnostics["hinge_w"] = hinge_w.detach().mean()
    diagnostics["hinge_l"] = hinge_l.detach().mean()
    return loss, diagnostics


def dpo_loss(
    err_theta_w: torch.Tensor,
    err_ref_w: torch.Tensor,
    err_theta_l: torch.Tensor,
    err_ref_l: torch.Tensor,
    beta_dpo: float = DPO_DEFAULT_BETA,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Diffusion-DPO's loss (default β_D=5000, for SD 1.5, in the published convention) and its
    diagnostics (adds ``logit``, the batch mean of ``−½ β_D ((θ_w − ref_w) − (θ_l − ref_l))``)."""
    _check(err_theta_w, err_ref_w, err_theta_l, err_ref_l)
    logit = -0.5 * beta_dpo * ((err_theta_w - err_ref_w) - (err_theta_l - err_ref_l))
    loss = -F.logsigmoid(logit).mean()
    diagnostics = _common_diagnostics(err_theta_w, err_ref_w, err_theta_l, err_ref_l)
    diagnostics["logit"] = logit.detach().mean()
    return loss, diagnostics
