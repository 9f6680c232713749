"""Per-sample denoising errors of an (aligned, violating) image pair: the inputs of both losses.

``ℓ(y, c)`` is the mean over channels and pixels of ``(target − UNet(y_t, t, c))²``, where ``y_t`` is
``y`` noised to timestep ``t`` and the target is what the scheduler's model predicts: the noise
``ε`` (``prediction_type="epsilon"``), the velocity ``v`` (``"v_prediction"``, from
``scheduler.get_velocity``) or the clean sample (``"sample"``). The winner and the loser of a pair
share the same noise and the same timestep, so their errors differ only by the image.

:func:`pair_errors` serves both methods:

* LiVO: one frozen U-Net; θ is the U-Net conditioned on ``c_θ`` (gradient flows through the frozen
  U-Net into the value encoder), the reference is the same U-Net on ``c_ref``.
* Diffusion-DPO: θ is the trained U-Net, the reference a frozen copy, both on the same conditioning.

The reference pass always runs under ``torch.no_grad()``: its errors carry no graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from livo.errors import ConfigError

if TYPE_CHECKING:
    from diffusers import UNet2DConditionModel

# A diffusers noise scheduler with ``add_noise``/``get_velocity`` (DDPM, DDIM, ...); the shared base
# class ``SchedulerMixin`` does not declare them.
NoiseScheduler = Any


@dataclass
class PairErrors:
    """Per-sample errors, each of shape ``(batch,)``: θ and reference on winner (w) and loser (l)."""

    theta_w: torch.Tensor
    ref_w: torch.Tensor
    theta_l: torch.Tensor
    ref_l: torch.Tensor


def prediction_target(
    scheduler: NoiseScheduler, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
) -> torch.Tensor:
    """What the U-Net is trained to predict for ``latents`` noised with ``noise`` at ``timesteps``."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    if kind == "sample":
        return latents
    raise ConfigError(f"scheduler.prediction_type: {kind!r} is not epsilon, v_prediction or sample")


def per_sample_error(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error per sample over all non-batch axes, computed in float32."""
    squared = F.mse_loss(prediction.float(), target.float(), reduction="none")
    return squared.flatten(1).mean(dim=1)


def sample_noise_and_timesteps(
    scheduler: NoiseScheduler, latents: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One noise tensor and one uniform training timestep per pair (shared by winner and loser)."""
    noise = torch.randn(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
    steps = int(scheduler.config.num_train_timesteps)
    timesteps = torch.randint(0, steps, (latents.shape[0],), generator=generator, device=latents.device)
    return noise, timesteps


def _errors(
    unet: UNet2DConditionModel,
    scheduler: NoiseScheduler,
    latents_w: torch.Tensor,
    latents_l: torch.Tensor,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
    conditioning: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    batch = latents_w.shape[0]
    latents = torch.cat([latents_w, latents_l])
    noise2 = torch.cat([noise, noise])
    timesteps2 = torch.cat([timesteps, timesteps])
    noisy = scheduler.add_noise(latents, noise2, timesteps2)
    target = prediction_target(scheduler, latents, noise2, timesteps2)
    unet_dtype = next(unet.parameters()).dtype
    prediction = unet(
        noisy.to(unet_dtype),
        timesteps2,
        encoder_hidden_states=torch.cat([conditioning, conditioning]).to(unet_dtype),
        return_dict=False,
    )[0]
    errors = per_sample_error(prediction, target)
    return errors[:batch], errors[batch:]


def pair_errors(
    scheduler: NoiseScheduler,
    latents_w: torch.Tensor,
    latents_l: torch.Tensor,
    *,
    unet_theta: UNet2DConditionModel,
    cond_theta: torch.Tensor,
    unet_ref: UNet2DConditionModel | None = None,
    cond_ref: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    timesteps: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> PairErrors:
    """The four per-sample errors of a batch of (aligned ``latents_w``, violating ``latents_l``).

    ``unet_ref`` defaults to ``unet_theta`` (LiVO) and ``cond_ref`` to ``cond_theta`` (DPO). Noise
    and timesteps are drawn from ``generator`` unless given; winner and loser share them. Winner and
    loser go through each U-Net in one batch of ``2B``.
    """
    if latents_w.shape != latents_l.shape:
        raise ConfigError(f"latents: winner {tuple(latents_w.shape)} and loser {tuple(latents_l.shape)} differ")
    if noise is None or timesteps is None:
        sampled_noise, sampled_timesteps = sample_noise_and_timesteps(scheduler, latents_w, generator)
        noise = sampled_noise if noise is None else noise
        timesteps = sampled_timesteps if timesteps is None else timesteps
    unet_ref = unet_theta if unet_ref is None else unet_ref
    cond_ref = cond_theta if cond_ref is None else cond_ref
    theta_w, theta_l = _errors(unet_theta, scheduler, latents_w, latents_l, noise, timesteps, cond_theta)
    with torch.no_grad():
        ref_w, ref_l = _errors(unet_ref, scheduler, latents_w, latents_l, noise, timesteps, cond_ref.detach())
    return PairErrors(theta_w=theta_w, ref_w=ref_w, theta_l=theta_l, ref_l=ref_l)


def freeze_for_value_training(*frozen: torch.nn.Module, value_encoder: torch.nn.Module) -> None:
    """LiVO's training setup: every module in ``frozen`` (U-Net, VAE, text encoder) gets
    ``requires_grad=False`` and eval mode; the value encoder is fully trainable."""
    for module in frozen:
        module.requires_grad_(False)
        module.eval()
    value_encoder.requires_grad_(True)
    value_encoder.train()
