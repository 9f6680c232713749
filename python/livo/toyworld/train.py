"""Training recipe of the toy world's base model (``livo toyworld train``).

Text encoder and U-Net are trained jointly from scratch on freshly rendered scenes (the renderer is
the data set, so no data files are needed): epsilon-prediction DDPM loss with min-SNR weighting,
AdamW with warm-up and cosine decay, gradient clipping, 10% empty-prompt dropout (for
classifier-free guidance) and an EMA of the weights, which is what gets saved. Everything random is
drawn from ``seed``, so a run on the same machine and thread count reproduces the same weights.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from livo.errors import ConfigError


@dataclass(frozen=True)
class TrainConfig:
    """Recipe of the shipped model. Defaults took about 14 minutes alone on 2 CPU cores."""

    output: str
    steps: int = 2200
    batch_size: int = 64
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    final_lr_fraction: float = 0.1
    weight_decay: float = 1e-2
    grad_clip: float = 1.0
    ema_decay: float = 0.998
    prompt_dropout: float = 0.1
    min_snr_gamma: float = 5.0
    seed: int = 0
    threads: int = 2
    checkpoint_every: int = 0  # 0: only the final model; else also save EMA weights every N steps
    log_every: int = 50

    def validate(self) -> None:
        for name in ("steps", "batch_size", "threads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.learning_rate < 1:
            raise ConfigError(f"TrainConfig.learning_rate must be in (0, 1), got {self.learning_rate}")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"TrainConfig.ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0 <= self.prompt_dropout < 1:
            raise ConfigError(f"TrainConfig.prompt_dropout must be in [0, 1), got {self.prompt_dropout}")


def learning_rate_at(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to ``final_lr_fraction`` of the peak."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    floor = config.final_lr_fraction
    return config.learning_rate * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def train(config: TrainConfig, log: Callable[[str], None] = print) -> Path:
    """Train the base model and save it (EMA weights) in diffusers layout at ``config.output``."""
    import torch

    from livo.toyworld.model import assemble_pipeline, build_schedulers, build_text_encoder, build_tokenizer
    from livo.toyworld.model import build_unet, pass_through_vae, save_pipeline
    from livo.toyworld.render import training_batch

    config.validate()
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed + 1)

    tokenizer = build_tokenizer()
    text_encoder = build_text_encoder(config.seed)
    unet = build_unet(config.seed)
    vae = pass_through_vae().requires_grad_(False)
    scheduler, _ = build_schedulers()
    modules = torch.nn.ModuleList([text_encoder, unet])
    ema = [p.detach().clone() for p in modules.parameters()]
    optimizer = torch.optim.AdamW(modules.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    alphas = scheduler.alphas_cumprod
    snr = alphas / (1 - alphas)
    loss_weight = torch.clamp(snr, max=config.min_snr_gamma) / snr

    token_cache: dict[str, torch.Tensor] = {}

    def tokens(prompt: str) -> torch.Tensor:
        if prompt not in token_cache:
            ids = tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True)
            token_cache[prompt] = torch.tensor(ids["input_ids"])
        return token_cache[prompt]

    def save(folder: Path, step: int, seconds: float) -> None:
        live = [p.detach().clone() for p in modules.parameters()]
        with torch.no_grad():
            for p, e in zip(modules.parameters(), ema):
                p.copy_(e)
        recipe = {"train_config": asdict(config), "steps_done": step, "train_seconds": round(seconds, 1)}
        save_pipeline(assemble_pipeline(text_encoder, unet), folder, extra=recipe)
        with torch.no_grad():
            for p, v in zip(modules.parameters(), live):
                p.copy_(v)

    started = time.perf_counter()
    running = 0.0
    for step in range(config.steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate_at(step, config)
        specs, images = training_batch(rng, config.batch_size)
        prompts = ["" if rng.random() < config.prompt_dropout else s.text() for s in specs]
        pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        with torch.no_grad():
            latents = vae.encode(pixels).latent_dist.sample(generator) * vae.config.scaling_factor
        noise = torch.randn(latents.shape, generator=generator)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],), generator=generator)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        ids = torch.stack([tokens(p) for p in prompts])
        hidden = text_encoder(ids)[0]
        prediction = unet(noisy, timesteps, encoder_hidden_states=hidden).sample
        per_sample = ((prediction - noise) ** 2).mean(dim=(1, 2, 3))
        loss = (per_sample * loss_weight[timesteps]).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(modules.parameters(), config.grad_clip)
        optimizer.step()
        decay = min(config.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema, modules.parameters()):
                e.lerp_(p.detach(), 1 - decay)
        running = loss.item() if step == 0 else 0.98 * running + 0.02 * loss.item()
        if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
            elapsed = time.perf_counter() - started
            log(json.dumps({"step": step + 1, "loss": round(running, 5), "lr": round(learning_rate_at(step, config), 6),
                            "elapsed_s": round(elapsed, 1), "s_per_step": round(elapsed / (step + 1), 3)}))
        if config.checkpoint_every and (step + 1) % config.checkpoint_every == 0 and step + 1 < config.steps:
            save(Path(f"{config.output}-step{step + 1}"), step + 1, time.perf_counter() - started)
    seconds = time.perf_counter() - started
    save(Path(config.output), config.steps, seconds)
    log(json.dumps({"saved": str(config.output), "train_seconds": round(seconds, 1)}))
    return Path(config.output)


