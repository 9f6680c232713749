"""Denoising errors of (aligned, violating) pairs and where LiVO's gradients go."""

import pytest
import torch

from livo.losses import livo_loss
from livo.models import (
    ValueEncoder,
    freeze_for_value_training,
    pair_errors,
    prediction_target,
    value_conditioning,
)
from livo.testing import TinyModelConfig, tiny_components

pytestmark = pytest.mark.usefixtures("torch_one_thread")


PROMPTS = ["a photo of a doctor", "a bloody zombie"]
VALUES = ["gender equality", "bloody content is considered inappropriate"]


def latent_pair(components: dict, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    unet = components["unet"]
    shape = (len(PROMPTS), unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)


def test_one_step_trains_every_value_encoder_parameter_and_nothing_else() -> None:
    components = tiny_components(seed=1)
    unet, vae, text_encoder, tokenizer = (components[k] for k in ("unet", "vae", "text_encoder", "tokenizer"))
    value_encoder = ValueEncoder.from_text_encoder(text_encoder)
    freeze_for_value_training(unet, vae, text_encoder, value_encoder=value_encoder)
    before = {name: p.detach().clone() for name, p in value_encoder.named_parameters()}
    optimizer = torch.optim.AdamW(value_encoder.parameters(), lr=1e-3)

    cond = value_conditioning(value_encoder, text_encoder, tokenizer, VALUES, PROMPTS)
    winner, loser = latent_pair(components)
    errors = pair_errors(
        components["scheduler"],
        winner,
        loser,
        unet_theta=unet,
        cond_theta=cond.c_theta,
        cond_ref=cond.c_ref,
        generator=torch.Generator().manual_seed(2),
    )
    loss, diagnostics = livo_loss(errors.theta_w, errors.ref_w, errors.theta_l, errors.ref_l, beta=1.0, alpha=1.0)
    assert diagnostics["hinge_w"] > 0 and diagnostics["hinge_l"] > 0
    loss.backward()
    optimizer.step()

    for module in (unet, vae, text_encoder):
        assert all(p.grad is None for p in module.parameters())
    for name, parameter in value_encoder.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
        assert not torch.equal(parameter.detach(), before[name]), name


def test_reference_errors_carry_no_graph_even_through_a_trainable_unet() -> None:
    components = tiny_components(seed=2)
    unet, text_encoder, tokenizer = components["unet"], components["text_encoder"], components["tokenizer"]
    assert all(p.requires_grad for p in unet.parameters())
    value_encoder = ValueEncoder.from_text_encoder(text_encoder)
    cond = value_conditioning(value_encoder, text_encoder, tokenizer, VALUES, PROMPTS)
    winner, loser = latent_pair(components)
    errors = pair_errors(
        components["scheduler"], winner, loser, unet_theta=unet, cond_theta=cond.c_theta, cond_ref=cond.c_ref
    )
    for reference in (errors.ref_w, errors.ref_l):
        assert reference.grad_fn is None and not reference.requires_grad
    assert errors.theta_w.grad_fn is not None and errors.theta_l.grad_fn is not None


def test_winner_and_loser_share_noise_and_timestep() -> None:
    components = tiny_components(seed=3)
    text_encoder, tokenizer = components["text_encoder"], components["tokenizer"]
    with torch.no_grad():
        cond = value_conditioning(
            ValueEncoder.from_text_encoder(text_encoder), text_encoder, tokenizer, VALUES, PROMPTS
        )
        same, _ = latent_pair(components)
        errors = pair_errors(
            components["scheduler"],
            same,
            same.clone(),
            unet_theta=components["unet"],
            cond_theta=cond.c_theta,
            cond_ref=cond.c_ref,
            generator=torch.Generator().manual_seed(0),
        )
    assert torch.equal(errors.theta_w, errors.theta_l) and torch.equal(errors.ref_w, errors.ref_l)
    assert not torch.equal(errors.theta_w, errors.ref_w)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_errors_match_a_hand_computation_of_the_scheduler_target(prediction_type: str) -> None:
    components = tiny_components(seed=4, config=TinyModelConfig(prediction_type=prediction_type))
    unet, scheduler, text_encoder, tokenizer = (
        components[k] for k in ("unet", "scheduler", "text_encoder", "tokenizer")
    )
    winner, loser = latent_pair(components)
    noise = torch.randn(winner.shape, generator=torch.Generator().manual_seed(5))
    timesteps = torch.tensor([10, 900])
    alpha_bar = scheduler.alphas_cumprod[timesteps].view(-1, 1, 1, 1)
    if prediction_type == "epsilon":
        target_w = noise
    else:
        target_w = alpha_bar.sqrt() * noise - (1 - alpha_bar).sqrt() * winner
    torch.testing.assert_close(prediction_target(scheduler, winner, noise, timesteps), target_w)
    with torch.no_grad():
        cond = value_conditioning(
            ValueEncoder.from_text_encoder(text_encoder), text_encoder, tokenizer, VALUES, PROMPTS
        )
        errors = pair_errors(
            scheduler,
            winner,
            loser,
            unet_theta=unet,
            cond_theta=cond.c_theta,
            cond_ref=cond.c_ref,
            noise=noise,
            timesteps=timesteps,
        )
        noisy_w = alpha_bar.sqrt() * winner + (1 - alpha_bar).sqrt() * noise
        prediction_w = unet(noisy_w, timesteps, encoder_hidden_states=cond.c_ref).sample
    by_hand = ((prediction_w - target_w) ** 2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(errors.ref_w, by_hand, rtol=1e-4, atol=1e-6)
