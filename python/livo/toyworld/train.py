"""Training recipe of the toy world's base model (``livo toyworld train``).

Text encoder and U-Net are trained jointly from scratch on freshly rendered scenes (the renderer is
the data set, so no data files are needed): epsilon-prediction DDPM loss with min-SNR weighting,
AdamW with warm-up and cosine decay, gradient clipping, 10% empty-prompt dropout (for
classifier-free guidance) and an EMA of the weights, which is what gets saved.

Why data parallel on one machine: this U-Net's convolutions are too small for two intra-op threads
to share well. Two processes with one thread each and ``DistributedDataParallel`` over gloo (the
default) ran the previous, larger network's batch-64 step in 0.67 s where one process with two
threads took 1.0–1.2 s (idle 2-core machine); the shipped recipe's step takes 0.42 s this way.

Everything random is drawn from ``seed`` and the rank, so a run with the same seed, process count
and thread count reproduces the same weights.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from livo.config import StrictModel
from livo.lr_schedule import scheduled_lr
from livo.runtime import apply_process_defaults, free_port


class ToyModelRecipe(StrictModel):
    """Recipe of the shipped model: the defaults reproduce its weights (``docs/toyworld.md``)."""

    output: str
    steps: int = Field(1950, ge=1)
    batch_size: int = Field(64, ge=1)  # global: split evenly over ``processes``
    learning_rate: float = Field(2e-3, gt=0, lt=1)
    warmup_steps: int = Field(100, ge=0)
    final_lr_fraction: float = Field(0.1, ge=0, le=1)
    weight_decay: float = Field(1e-2, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    ema_decay: float = Field(0.998, ge=0, lt=1)
    prompt_dropout: float = Field(0.1, ge=0, lt=1)
    min_snr_gamma: float = Field(5.0, gt=0)
    # "draw" (shipped): timesteps drawn in proportion to the min-SNR weights; "weight": uniform
    # timesteps, each sample weighted by its min-SNR weight (same expected loss; see sample_timesteps).
    timestep_sampling: Literal["draw", "weight"] = "draw"
    fused_optimizer: bool = True  # one AdamW kernel for all tensors: ~20 ms less a step than the for-loop
    seed: int = 0
    processes: int = Field(2, ge=1)  # data-parallel worker processes (gloo); 1 trains in the calling process
    threads: int = Field(1, ge=1)  # intra-op threads per process
    # 0: only the final model; else also the EMA weights every N steps, to OUTPUT-stepN beside OUTPUT
    checkpoint_every: int = Field(0, ge=0)
    # Weight of an auxiliary loss that lays each person's default colour along one shared direction
    # of the text encoder's pooled output (+1 for the first attribute, -1 for the second), as a
    # pretrained text encoder carries a bias such as gender along a shared direction. 0 (shipped):
    # the denoising loss alone, so nothing ties one person's default to another's.
    default_direction_weight: float = Field(0.0, ge=0)
    log_every: int = Field(50, ge=1)

    @model_validator(mode="after")
    def _batch_splits_over_processes(self) -> ToyModelRecipe:
        if self.batch_size % self.processes:
            raise ValueError(f"batch_size ({self.batch_size}) must be divisible by processes ({self.processes})")
        return self


def checkpoint_folders(config: ToyModelRecipe) -> list[Path]:
    """Where the checkpoints of ``config`` go: ``OUTPUT-stepN`` beside ``OUTPUT`` (whatever
    ``OUTPUT`` ends with: ``runs/toy/`` gives ``runs/toy-step500``), one per ``checkpoint_every``
    steps before the last."""
    if not config.checkpoint_every:
        return []
    return [
        checkpoint_folder(config, step)
        for step in range(config.checkpoint_every, config.steps, config.checkpoint_every)
    ]


def checkpoint_folder(config: ToyModelRecipe, step: int) -> Path:
    """``OUTPUT-stepN``, beside ``OUTPUT``."""
    output = Path(config.output)
    return output.with_name(f"{output.name}-step{step}")


def learning_rate_at(step: int, config: ToyModelRecipe) -> float:
    """Linear warm-up, then cosine decay to ``final_lr_fraction`` of the peak."""
    return scheduled_lr(
        config.learning_rate, "cosine", config.warmup_steps, config.steps, step, config.final_lr_fraction
    )


def sample_timesteps(mode: str, loss_weight: Any, count: int, generator: Any) -> tuple[Any, Any]:
    """``count`` training timesteps and the loss weight of each sample.

    ``"weight"``: uniform timesteps, each sample weighted by ``loss_weight[t]``. ``"draw"``: timesteps
    drawn in proportion to ``loss_weight``, every sample weighted by its mean -- the same expected
    loss, but no samples spent on steps that would be weighted near zero (min-SNR-5 gives 19% of the
    steps a weight below 0.5)."""
    import torch

    if mode == "draw":
        timesteps = torch.multinomial(loss_weight / loss_weight.sum(), count, replacement=True, generator=generator)
        return timesteps, loss_weight.mean().expand(count)
    timesteps = torch.randint(0, len(loss_weight), (count,), generator=generator)
    return timesteps, loss_weight[timesteps]


def train(config: ToyModelRecipe, log: Callable[[str], None] = print) -> Path:
    """Train the base model and save it (EMA weights) in diffusers layout at ``config.output``.

    With ``processes > 1`` the ranks run in spawned processes; their log lines come back through a
    queue and are passed to ``log`` here, and an exception in any rank is raised here.
    """
    if config.processes == 1:
        _train_rank(0, config, None, log)
        return Path(config.output)

    import torch.multiprocessing as mp

    apply_process_defaults()  # the spawned ranks inherit them
    queue = mp.get_context("spawn").SimpleQueue()
    context = mp.spawn(_train_rank, args=(config, free_port(), queue, os.getpid()), nprocs=config.processes, join=False)
    while True:
        while not queue.empty():
            log(queue.get())
        if context.join(timeout=0.5):
            break
    while not queue.empty():
        log(queue.get())
    return Path(config.output)


def default_direction_loss(pooled: Any, specs: list[Any], prompts: list[str], direction: Any) -> Any:
    """Mean squared distance of ``pooled · direction`` from +1 (a person whose default is the first
    attribute) or -1 (the second), over the batch's people-prompts without a colour word (and not
    dropped to the empty prompt); 0 when the batch has none."""
    from livo.toyworld.grammar import ATTRIBUTES, DEFAULT_ATTRIBUTE

    rows = [i for i, (s, p) in enumerate(zip(specs, prompts, strict=True)) if p and s.is_person and s.attribute is None]
    if not rows:
        return pooled.sum() * 0.0
    targets = [1.0 if DEFAULT_ATTRIBUTE[specs[i].subject] == ATTRIBUTES[0] else -1.0 for i in rows]
    projection = pooled[rows] @ direction
    return ((projection - projection.new_tensor(targets)) ** 2).mean()


def _no_buffer_sync() -> dict[str, Any]:
    """DDP's keyword for "do not sync buffers before every forward" (renamed in recent PyTorch)."""
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    renamed = "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
    return {"forward_sync_buffers": False} if renamed else {"broadcast_buffers": False}


def _joint_module(text_encoder: Any, unet: Any) -> Any:
    """Text encoder + U-Net as one module, so ``DistributedDataParallel`` can wrap both."""
    import torch

    class Denoiser(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.text_encoder = text_encoder
            self.unet = unet

        def forward(
            self, ids: torch.Tensor, noisy: torch.Tensor, timesteps: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            """The noise prediction, and the text encoder's pooled output (for the default-colour loss)."""
            encoded = self.text_encoder(ids)
            return self.unet(noisy, timesteps, encoder_hidden_states=encoded[0]).sample, encoded[1]

    return Denoiser()


def _train_rank(rank: int, config: ToyModelRecipe, port: int | None, sink: Any, launcher: int | None = None) -> None:
    import torch
    import torch.distributed as dist

    from livo.toyworld.model import (
        assemble_pipeline,
        build_schedulers,
        build_text_encoder,
        build_tokenizer,
        build_unet,
        pass_through_vae,
        save_pipeline,
    )
    from livo.toyworld.render import training_batch

    world = config.processes
    if world > 1:
        from livo.lifetime import end_with_parent

        end_with_parent(launcher)  # a killed `livo toyworld train` must not leave its ranks training
    log: Callable[[str], None] = sink.put if world > 1 else sink
    torch.set_num_threads(config.threads)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        torch.manual_seed(config.seed)
        # Rank 0 of a 1-process run draws the same data as before data parallelism existed.
        rng = np.random.default_rng(config.seed if world == 1 else [config.seed, rank])
        generator = torch.Generator().manual_seed(config.seed + 1 + 1000 * rank)

        tokenizer = build_tokenizer()
        text_encoder = build_text_encoder(config.seed)
        unet = build_unet(config.seed)
        vae = pass_through_vae().requires_grad_(False)
        scheduler, _ = build_schedulers()
        model = _joint_module(text_encoder, unet)
        # No buffer needs syncing (the text encoder's position ids are constants), and gradients can
        # live in the all-reduce buckets: one broadcast and one copy fewer per step.
        step_model = (
            torch.nn.parallel.DistributedDataParallel(model, gradient_as_bucket_view=True, **_no_buffer_sync())
            if world > 1
            else model
        )
        ema = [p.detach().clone() for p in model.parameters()] if rank == 0 else []
        optimizer = torch.optim.AdamW(
            model.parameters(),
            lr=config.learning_rate,
            weight_decay=config.weight_decay,
            fused=config.fused_optimizer or None,  # None: PyTorch picks the for-loop kernel on CPU
        )
        alphas = scheduler.alphas_cumprod
        snr = alphas / (1 - alphas)
        loss_weight = torch.clamp(snr, max=config.min_snr_gamma) / snr
        local_batch = config.batch_size // world

        token_cache: dict[str, torch.Tensor] = {}
        direction = torch.randn(
            text_encoder.config.hidden_size, generator=torch.Generator().manual_seed(config.seed + 99)
        )
        direction = direction / direction.norm()

        def tokens(prompt: str) -> torch.Tensor:
            if prompt not in token_cache:
                ids = tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True)
                token_cache[prompt] = torch.tensor(ids["input_ids"])
            return token_cache[prompt]

        def save(folder: Path, step: int, seconds: float) -> None:
            live = [p.detach().clone() for p in model.parameters()]
            with torch.no_grad():
                for p, e in zip(model.parameters(), ema):
                    p.copy_(e)
            recipe = {
                "train_config": config.model_dump(mode="json"),
                "steps_done": step,
                "train_seconds": round(seconds, 1),
            }
            save_pipeline(assemble_pipeline(text_encoder, unet), folder, extra=recipe)
            with torch.no_grad():
                for p, v in zip(model.parameters(), live):
                    p.copy_(v)

        started = time.perf_counter()
        running = 0.0
        for step in range(config.steps):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate_at(step, config)
            specs, images = training_batch(rng, local_batch)
            prompts = ["" if rng.random() < config.prompt_dropout else s.text() for s in specs]
            pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
            with torch.no_grad():
                latents = vae.encode(pixels).latent_dist.sample(generator) * vae.config.scaling_factor
            noise = torch.randn(latents.shape, generator=generator)
            timesteps, sample_weight = sample_timesteps(
                config.timestep_sampling, loss_weight, latents.shape[0], generator
            )
            noisy = scheduler.add_noise(latents, noise, timesteps)
            ids = torch.stack([tokens(p) for p in prompts])
            prediction, pooled = step_model(ids, noisy, timesteps)
            per_sample = ((prediction - noise) ** 2).mean(dim=(1, 2, 3))
            loss = (per_sample * sample_weight).mean()
            if config.default_direction_weight > 0:
                loss = loss + config.default_direction_weight * default_direction_loss(
                    pooled, specs, prompts, direction
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # DDP averages the gradients over ranks here
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            if rank != 0:
                continue
            decay = min(config.ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                for e, p in zip(ema, model.parameters()):
                    e.lerp_(p.detach(), 1 - decay)
            # Rank 0's own loss: an estimate on batch_size / processes samples.
            running = loss.item() if step == 0 else 0.98 * running + 0.02 * loss.item()
            if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
                elapsed = time.perf_counter() - started
                log(
                    json.dumps(
                        {
                            "step": step + 1,
                            "loss": round(running, 5),
                            "lr": round(learning_rate_at(step, config), 6),
                            "elapsed_s": round(elapsed, 1),
                            "s_per_step": round(elapsed / (step + 1), 3),
                        }
                    )
                )
            if config.checkpoint_every and (step + 1) % config.checkpoint_every == 0 and step + 1 < config.steps:
                save(checkpoint_folder(config, step + 1), step + 1, time.perf_counter() - started)
        if rank == 0:
            seconds = time.perf_counter() - started
            save(Path(config.output), config.steps, seconds)
            log(json.dumps({"saved": str(config.output), "train_seconds": round(seconds, 1)}))
    finally:
        if world > 1:
            dist.destroy_process_group()
