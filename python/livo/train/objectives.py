"""What is trained and how its loss is computed: LiVO (value encoder) or Diffusion-DPO (U-Net).

An :class:`Objective` owns the trainable module that DeepSpeed wraps and turns a
:class:`~livo.train.pairs_input.PairBatch` into ``(loss, diagnostics)``:

* :class:`LiVOObjective`: a :class:`~livo.models.ValueEncoder` copied from the base text encoder is
  the only trainable module; the frozen U-Net sees ``c_θ = [e_v ; c_ref]`` for θ and ``c_ref`` for the
  reference (one U-Net, gradients flow through it into ``E_V``), then :func:`livo.losses.livo_loss`.
  A record with ``k`` values gets ``k`` value tokens, ``c_θ = [e_v1 … e_vk ; c_ref(L − k)]``, as at
  inference; every row's reference is ``c_ref(L − 1)``, the prompt without any value.
* :class:`DPOObjective`: LoRA adapters on the U-Net (peft, through diffusers' ``add_adapter``) or the
  full U-Net are trained; the reference is the same U-Net with adapters disabled, or a frozen copy;
  both see the base conditioning ``E_T(prompt)``; then :func:`livo.losses.dpo_loss`.

Noise and timesteps come from the trainer's seeded generator and are shared by winner and loser.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from livo.errors import InputError
from livo.losses import dpo_loss, livo_loss
from livo.models.conditioning import (
    base_conditioning,
    max_value_tokens,
    reference_conditioning,
    with_value_tokens,
)
from livo.models.denoising import freeze_for_value_training, pair_errors
from livo.models.value_encoder import ValueEncoder, value_tokens
from livo.train.config import TrainConfig
from livo.train.pairs_input import PairBatch

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


def encode_latents(vae: Any, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """VAE latents of ``pixels`` (sampled from the latent distribution, scaled), without gradient."""
    with torch.no_grad():
        dist = vae.encode(pixels.to(device=vae.device, dtype=vae.dtype)).latent_dist
        noise = torch.randn(dist.mean.shape, generator=generator, device=generator.device, dtype=torch.float32)
        return (dist.mean.float() + dist.std.float() * noise.to(dist.mean.device)) * vae.config.scaling_factor


class Objective:
    """Base class: ``module`` is what DeepSpeed wraps; ``compute`` gives the loss of a batch."""

    module: torch.nn.Module

    def __init__(self, pipeline: Any, scheduler: Any, config: TrainConfig) -> None:
        self.pipeline = pipeline
        self.scheduler = scheduler
        self.config = config

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.module.parameters() if p.requires_grad]

    def latents(self, batch: PairBatch, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        vae = self.pipeline.vae
        both = encode_latents(vae, torch.cat([batch.aligned, batch.violating]), generator)
        return both[: len(batch.prompts)], both[len(batch.prompts) :]

    def compute(self, engine: Any, batch: PairBatch, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError


class LiVOObjective(Objective):
    """Trains a value encoder against the frozen model."""

    def __init__(self, pipeline: Any, scheduler: Any, config: TrainConfig) -> None:
        super().__init__(pipeline, scheduler, config)
        encoder = ValueEncoder.from_text_encoder(pipeline.text_encoder).float()
        self.module = encoder
        freeze_for_value_training(pipeline.unet, pipeline.vae, pipeline.text_encoder, value_encoder=encoder)
        if config.freeze_token_embeddings:
            encoder.get_input_embeddings().requires_grad_(False)
        if config.gradient_checkpointing:
            pipeline.unet.enable_gradient_checkpointing()
            # transformers 5 renamed it (the old name warns); 4.x has only the old one
            enable = getattr(self.module, "activation_checkpointing_enable", None)
            (enable or self.module.gradient_checkpointing_enable)()  # type: ignore[operator]

    def compute(self, engine: Any, batch: PairBatch, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        pipe = self.pipeline
        latents_w, latents_l = self.latents(batch, generator)
        c_ref = reference_conditioning(pipe.text_encoder, pipe.tokenizer, batch.prompts)
        errors = pair_errors(
            self.scheduler,
            latents_w,
            latents_l,
            unet_theta=pipe.unet,
            cond_theta=self.value_conditioning(engine, batch, c_ref),
            cond_ref=c_ref,
            generator=generator,
        )
        c = self.config
        return livo_loss(
            errors.theta_w,
            errors.ref_w,
            errors.theta_l,
            errors.ref_l,
            beta=c.beta,
            alpha=c.alpha,
            gamma1=c.gamma1,
            gamma2=c.gamma2,
        )

    def value_conditioning(self, engine: Any, batch: PairBatch, c_ref: torch.Tensor) -> torch.Tensor:
        """``c_θ`` of every row: one engine call for every (value, prompt) of the batch, then rows
        grouped by their number of values ``k``, each group's ``c_ref`` tokenised to ``L − k``
        (``c_ref``, at ``L − 1``, serves the one-value rows)."""
        pipe = self.pipeline
        tokenizer = pipe.tokenizer
        lists = batch.every_value()
        limit = max_value_tokens(tokenizer)
        for prompt, texts in zip(batch.prompts, lists):
            if len(texts) > limit:
                raise InputError(
                    f"dataset {self.config.dataset}: the pair for {prompt!r} has {len(texts)} values "
                    f"({'; '.join(texts)}); this model's tokenizer leaves room for {limit} value tokens a prompt"
                )
        flat = value_tokens(
            engine,
            tokenizer,
            [v for texts in lists for v in texts],
            [p for p, texts in zip(batch.prompts, lists) for _ in texts],
        )
        starts = [0]
        for texts in lists:
            starts.append(starts[-1] + len(texts))
        rows: list[torch.Tensor | None] = [None] * len(lists)
        for count in sorted({len(texts) for texts in lists}):
            members = [i for i, texts in enumerate(lists) if len(texts) == count]
            if count == 1:
                group_ref = c_ref[members]
            else:
                prompts = [batch.prompts[i] for i in members]
                group_ref = reference_conditioning(pipe.text_encoder, tokenizer, prompts, count)
            e_vs = torch.stack([flat[starts[i] : starts[i + 1]] for i in members])
            for i, row in zip(members, with_value_tokens(e_vs, group_ref)):
                rows[i] = row
        return torch.stack([row for row in rows if row is not None])


class _AdaptersOff(torch.nn.Module):
    """The LoRA-wrapped U-Net with its adapters disabled: Diffusion-DPO's reference, no copy."""

    def __init__(self, unet: torch.nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with adapters_disabled(self.unet):
            return self.unet(*args, **kwargs)


@contextmanager
def adapters_disabled(unet: Any) -> Iterator[None]:
    unet.disable_adapters()
    try:
        yield
    finally:
        unet.enable_adapters()


class DPOObjective(Objective):
    """Trains LoRA adapters on the U-Net, or the whole U-Net, with Diffusion-DPO's loss."""

    def __init__(self, pipeline: Any, scheduler: Any, config: TrainConfig) -> None:
        super().__init__(pipeline, scheduler, config)
        unet = pipeline.unet
        for frozen in (pipeline.vae, pipeline.text_encoder):
            frozen.requires_grad_(False).eval()
        if config.dpo_target == "lora":
            from peft import LoraConfig

            unet.requires_grad_(False)
            unet.add_adapter(
                LoraConfig(
                    r=config.lora_rank,
                    lora_alpha=config.lora_alpha,
                    init_lora_weights="gaussian",
                    target_modules=LORA_TARGETS,
                )
            )
            for parameter in unet.parameters():
                if parameter.requires_grad:
                    parameter.data = parameter.data.float()
            self.reference: torch.nn.Module = _AdaptersOff(unet)
        else:
            self.reference = copy.deepcopy(unet).requires_grad_(False).eval()
            unet.float().requires_grad_(True)
        unet.train()
        if config.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        self.module = unet

    def compute(self, engine: Any, batch: PairBatch, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        pipe = self.pipeline
        latents_w, latents_l = self.latents(batch, generator)
        cond = base_conditioning(pipe.text_encoder, pipe.tokenizer, batch.prompts)
        errors = pair_errors(
            self.scheduler,
            latents_w,
            latents_l,
            unet_theta=engine,
            cond_theta=cond,
            unet_ref=self.reference,
            generator=generator,
        )
        return dpo_loss(errors.theta_w, errors.ref_w, errors.theta_l, errors.ref_l, beta_dpo=self.config.beta_dpo)


def make_objective(pipeline: Any, scheduler: Any, config: TrainConfig) -> Objective:
    return (
        LiVOObjective(pipeline, scheduler, config)
        if config.loss == "livo"
        else DPOObjective(pipeline, scheduler, config)
    )
