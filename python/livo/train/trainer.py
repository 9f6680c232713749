"""The DeepSpeed training loop (``livo train CONFIG`` and :func:`train`).

Read top to bottom: set up the process group (a world of one without a launcher), load the frozen
base model in the compute dtype, build the objective (LiVO: a value encoder; DPO: the U-Net or its
LoRA adapters), hand *only its trainable parameters* to ``deepspeed.initialize`` with a client AdamW
(no C++ optimizer build) and a warm-up/constant scheduler, then loop: micro-batches from the shard
stream → loss → ``engine.backward`` → ``engine.step`` (gradient accumulation and clipping by
DeepSpeed), a log record per optimizer step, evaluation and checkpoints every N steps, and finally
the export: ``value_encoder/`` (LiVO) or ``unet/`` / ``unet_lora/`` (DPO). The same export is also
written at each of ``export_steps`` to ``exports/step<N>/``, so learning curves can be measured
afterwards on any prompts without stopping the run (steps past ``max_steps`` are left for a resumed
run that goes further).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import resource
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from livo.errors import ConfigError, PeerTimeoutError
from livo.lr_schedule import lr_factor
from livo.permissions import replace_folder
from livo.runtime import apply_process_defaults, is_verbose
from livo.train import checkpoints
from livo.train.config import DEFAULT_DEEPSPEED, TrainConfig
from livo.train.distributed import (
    barrier,
    ensure_build_tools,
    one_process_world,
    rank_and_world,
    set_collective_timeout,
)

EXPORTS = "exports"  # OUTPUT/exports/step<N>/: the weights at each of export_steps


@dataclass
class TrainResult:
    """What a run did: ``history`` holds this process's step records (resumed runs: the new ones)."""

    output: Path
    steps: int
    resumed_from: int | None
    history: list[dict[str, Any]] = field(default_factory=list)
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    export: Path | None = None
    train_seconds: float = 0.0


def compute_dtype(precision: str, device: Any) -> Any:
    import torch

    if precision == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def deepspeed_config(config: TrainConfig, dtype: Any) -> dict[str, Any]:
    """The DeepSpeed config: ZeRO/communication settings from the file (or the built-in ZeRO-2),
    batch sizes, clipping and precision from ``config``."""
    import torch

    if config.deepspeed_config is None:
        ds = copy.deepcopy(DEFAULT_DEEPSPEED)
    else:
        try:
            ds = json.loads(Path(config.deepspeed_config).read_text())
        except ValueError as error:
            raise ConfigError(f"deepspeed_config {config.deepspeed_config}: not valid JSON: {error}") from error
    for key in ("optimizer", "scheduler"):
        if key in ds:
            raise ConfigError(f"deepspeed_config: remove {key!r}; the trainer passes its own (see TrainConfig)")
    ds["train_micro_batch_size_per_gpu"] = config.micro_batch_size
    ds["gradient_accumulation_steps"] = config.gradient_accumulation_steps
    ds.pop("train_batch_size", None)
    ds["gradient_clipping"] = config.grad_clip
    ds["bf16"] = {"enabled": dtype == torch.bfloat16}
    ds["fp16"] = {"enabled": dtype == torch.float16, "loss_scale": 0, "initial_scale_power": 16}
    return ds


def _peak_memory_mb(device: Any) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _device() -> Any:
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def load_frozen_model(model: str, dtype: Any, device: Any) -> Any:
    import diffusers
    import transformers

    from livo.models.loading import load_base

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    # No safety checker: SD 1.5's would hold 1.2 GB on every rank and black out the images an
    # evaluation hook judges (the project's judges decide what an image shows).
    pipeline = load_base(model, dtype, device, safety_checker=None, requires_safety_checker=False)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def _scalar_record(
    step: int, parts: list[dict[str, Any]], lr: float, seconds: float, pairs: int, elapsed: float, device: Any
) -> dict[str, Any]:
    """One step's log record. The loss and diagnostics are means over the step's micro-batches and
    over all ranks (one all-reduce), so a multi-rank run logs the loss of every pair it trained on,
    not rank 0's share."""
    import torch
    import torch.distributed as dist

    keys = list(parts[0].keys())
    means = torch.stack(
        [torch.stack([torch.as_tensor(p[key], dtype=torch.float32, device=device) for key in keys]) for p in parts]
    ).mean(dim=0)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(means, op=dist.ReduceOp.SUM)
        means /= dist.get_world_size()
    record: dict[str, Any] = {"step": step}
    record.update(zip(keys, means.tolist()))
    record.update(
        lr=lr,
        pairs_per_s=pairs / seconds if seconds > 0 else 0.0,
        s_per_step=seconds,
        peak_memory_mb=_peak_memory_mb(device),
        elapsed_s=elapsed,
    )
    return record


class Trainer:
    """One run: ``Trainer(config, resume=...)`` sets everything up (process group, frozen model,
    objective, DeepSpeed engine, data, checkpoint); :meth:`run` trains to ``config.max_steps``.

    Without a launcher, the one-process world's variables (``RANK``, ``MASTER_PORT``, ...) are set
    for the run and removed again when :meth:`run` returns or fails, so processes started afterwards
    do not inherit a port this process's group still holds (:func:`one_process_world`)."""

    def __init__(self, config: TrainConfig, *, resume: bool = False) -> None:
        with contextlib.ExitStack() as world:
            world.enter_context(one_process_world())
            self._set_up(config, resume)
            self._world = world.pop_all()

    def _set_up(self, config: TrainConfig, resume: bool) -> None:
        import torch

        config.validate_inputs()
        ensure_build_tools()
        apply_process_defaults()
        if config.threads:
            torch.set_num_threads(config.threads)
        # Named, DeepSpeed does not guess the accelerator (and says so) in every rank.
        os.environ.setdefault("DS_ACCELERATOR", "cuda" if torch.cuda.is_available() else "cpu")
        import deepspeed

        for name in ("DeepSpeed", "deepspeed"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self.config = config
        self.device = device = _device()
        dtype = compute_dtype(config.precision, device)
        if device.type == "cpu" and dtype != torch.float32:
            raise ConfigError(f"precision: {config.precision} needs a GPU; on CPU use fp32 (or auto)")
        # On CPU, DeepSpeed prints a line every run as it loads its shared-memory op.
        with contextlib.nullcontext() if is_verbose() else contextlib.redirect_stdout(io.StringIO()):
            deepspeed.init_distributed(dist_backend="nccl" if device.type == "cuda" else "gloo")
        self.rank, self.world = rank, world = rank_and_world()
        if device.type == "cuda":
            torch.cuda.set_device(device)
            torch.cuda.reset_peak_memory_stats(device)

        from diffusers import DDPMScheduler

        from livo.train.objectives import make_objective
        from livo.train.pairs_input import pair_loader

        torch.manual_seed(config.seed)
        self.pipeline = load_frozen_model(config.model, dtype, device)
        self.objective = make_objective(
            self.pipeline, DDPMScheduler.from_config(self.pipeline.scheduler.config), config
        )
        if config.memory_check:
            self.memory_need = check_memory(self.objective, config, device, world)
        optimizer = torch.optim.AdamW(
            self.objective.trainable_parameters(),
            lr=config.learning_rate,
            betas=config.adam_betas,
            eps=config.adam_eps,
            weight_decay=config.weight_decay,
        )
        self.lr_schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, partial(lr_factor, config.lr_scheduler, config.warmup_steps, config.max_steps)
        )
        self.engine, self.optimizer, _, _ = deepspeed.initialize(
            model=self.objective.module,
            optimizer=optimizer,
            lr_scheduler=self.lr_schedule,
            config=deepspeed_config(config, dtype),
        )
        set_collective_timeout(config.collective_timeout_s)

        self.output = Path(config.output)
        self.checkpoints = self.output / "checkpoints"
        self.generator = torch.Generator(device=device).manual_seed(config.seed * 1000 + rank)
        self.loader = pair_loader(
            config.dataset,
            config.split,
            config.micro_batch_size,
            seed=config.seed,
            shuffle_buffer=config.shuffle_buffer,
            num_workers=config.num_workers,
            rank=rank,
            world_size=world,
            resolution=config.resolution,
        )
        self.start, self.resumed_from = 0, None
        self.elapsed_before = 0.0  # training seconds of the run this one resumes
        if resume:
            loaded = checkpoints.load(self.engine, self.checkpoints, rank, self.generator, config.to_dict())
            if loaded is not None:
                self.start, data_state, self.elapsed_before = loaded
                self.resumed_from = self.start
                self.loader.load_state_dict(data_state)
                self._follow_this_runs_schedule(config)
        self.resume = resume

    def _follow_this_runs_schedule(self, config: TrainConfig) -> None:
        """The rates of the step a resumed run continues at, by this run's schedule. The checkpoint
        restores the optimizer's rates and the scheduler's last rate as the old schedule left them
        (another max_steps, warmup_steps or lr_scheduler may be given on resume), and the new one
        would only take over after the first step."""
        factor = lr_factor(config.lr_scheduler, config.warmup_steps, config.max_steps, self.lr_schedule.last_epoch)
        rates = [base * factor for base in self.lr_schedule.base_lrs]
        for group, rate in zip(self.lr_schedule.optimizer.param_groups, rates):
            group["lr"] = rate
        self.lr_schedule._last_lr = rates  # what get_last_lr() reports, as LambdaLR.step() sets it

    def run(self) -> TrainResult:
        """Train from the current step to ``max_steps``; log, evaluate, checkpoint, export."""
        try:
            return self._train()
        finally:
            self._world.close()

    def _train(self) -> TrainResult:
        from livo.train.pairs_input import endless
        from livo.train.step_log import StepLog

        config, rank, engine = self.config, self.rank, self.engine
        if rank == 0:
            self.output.mkdir(parents=True, exist_ok=True)
            _write_json(self.output / "train_config.json", config.to_dict())
        log = StepLog(
            self.output,
            enabled=rank == 0,
            total_steps=config.max_steps,
            start_step=self.start,
            tensorboard=config.tensorboard,
            progress=config.progress,
        )
        if self.resume and self.resumed_from is None:
            log.write(f"no checkpoint in {self.checkpoints}: starting from step 0")
        elif self.resumed_from is not None:
            log.write(f"resumed from {self.checkpoints / checkpoints.step_tag(self.resumed_from)}")
        result = TrainResult(output=self.output, steps=self.start, resumed_from=self.resumed_from)
        setup_memory = _peak_memory_mb(self.device)
        train_memory = setup_memory  # peak before the first evaluation, which allocates far more
        batches = endless(self.loader, rank)
        started = time.perf_counter()
        try:
            for step in range(self.start + 1, config.max_steps + 1):
                step_started = time.perf_counter()
                applied_lr = self.lr_schedule.get_last_lr()[0]  # engine.step advances the schedule
                parts = []
                for _ in range(config.gradient_accumulation_steps):
                    loss, diagnostics = self.objective.compute(engine, next(batches), self.generator)
                    engine.backward(loss)
                    engine.step()
                    parts.append({"loss": loss.detach(), **diagnostics})
                seconds = time.perf_counter() - step_started
                pairs = config.micro_batch_size * config.gradient_accumulation_steps * self.world
                elapsed = self.elapsed_before + time.perf_counter() - started
                record = _scalar_record(step, parts, float(applied_lr), seconds, pairs, elapsed, self.device)
                result.history.append(record)
                result.steps = step
                if not result.evaluations:
                    train_memory = record["peak_memory_mb"]
                if step % config.log_every == 0 or step == config.max_steps:
                    log.step(record)
                # ``final`` evaluates after the last step whether or not ``every`` asks for others.
                if (config.eval.every and step % config.eval.every == 0) or (
                    config.eval.final and step == config.max_steps
                ):
                    _evaluate(self.objective, self.pipeline, config, step, rank, log, result)
                if step in config.export_steps and rank == 0:
                    export(self.objective, self.output / EXPORTS / checkpoints.step_tag(step), config)
                if config.checkpoint_every and step % config.checkpoint_every == 0:
                    checkpoints.save(
                        engine,
                        self.checkpoints,
                        step,
                        rank,
                        self.loader.state_dict(),
                        self.generator,
                        config.keep_checkpoints,
                        config.to_dict(),
                        elapsed_s=self.elapsed_before + time.perf_counter() - started,
                    )
            result.train_seconds = time.perf_counter() - started
            if rank == 0:
                result.export = export(self.objective, self.output, config)
                summary = {
                    "loss": config.loss,
                    "steps": result.steps,
                    "resumed_from": self.resumed_from,
                    "world_size": self.world,
                    "train_seconds": round(result.train_seconds, 2),
                    "trainable_parameters": sum(p.numel() for p in self.objective.trainable_parameters()),
                    "setup_peak_memory_mb": round(setup_memory, 1),
                    "train_peak_memory_mb": round(train_memory, 1),
                    "memory_measure": "cuda max_memory_allocated" if self.device.type == "cuda" else "peak RSS",
                    "export": str(result.export),
                }
                _write_json(self.output / "run_summary.json", summary)
                log.finish(json.dumps(summary))
            barrier()
        except RuntimeError as error:
            if "Timed out waiting" not in str(error):  # gloo's words for a collective past its timeout
                raise
            raise PeerTimeoutError(
                f"rank {rank} waited more than collective_timeout_s={config.collective_timeout_s:g} s for the other "
                f"ranks after step {result.steps}: a peer stopped answering without closing its connection (a node "
                "lost from the network, a paused or stuck rank). Once every node is back, start the same launchers "
                "with --resume; raise collective_timeout_s if a rank legitimately takes longer (rank 0's evaluation "
                "or checkpoint save)"
            ) from error
        finally:
            log.close()
        return result


def check_memory(objective: Any, config: TrainConfig, device: Any, world: int) -> Any:
    """Measures this rank's need before the optimizer allocates (``livo.train.memory_check``); every
    rank raises when any rank does not fit, so none is left waiting at a collective."""
    import torch
    import torch.distributed as dist

    from livo.train.memory_check import bucket_elements, check_fits, measure_need
    from livo.train.pairs_input import dataset_image_size

    barrier()  # every rank has loaded its model: the host's free memory is what is left after all of them
    dtype = compute_dtype(config.precision, device)
    buckets = bucket_elements(deepspeed_config(config, dtype))
    size = dataset_image_size(config.dataset, config.split, config.resolution)
    # "auto" is mixed precision on a GPU: the optimizer then keeps fp32 master weights beside them.
    mixed = dtype in (torch.bfloat16, torch.float16)
    need = measure_need(objective, config, device, size, world, buckets, mixed_precision=mixed)
    if dist.is_available() and dist.is_initialized() and world > 1:
        over = torch.tensor([float(need.total > need.available)], device=device)
        dist.all_reduce(over, op=dist.ReduceOp.MAX)
        if over.item() and need.total <= need.available:
            raise ConfigError("training does not fit in memory on another rank (its message names the figures)")
    check_fits(need, config)
    return need


def _write_json(path: Path, value: dict[str, Any]) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(value, indent=2) + "\n")
    os.replace(temporary, path)


def train(config: TrainConfig, *, resume: bool = False) -> TrainResult:
    """Run (or, with ``resume``, continue) a training job; see the module docstring.

    Called without a launcher, the one-process world's variables are removed again when it returns,
    so processes the caller starts afterwards do not inherit them."""
    return Trainer(config, resume=resume).run()


def _evaluate(
    objective: Any, pipeline: Any, config: TrainConfig, step: int, rank: int, log: Any, result: TrainResult
) -> None:
    """Rank 0 runs the config's evaluation hook while the other ranks wait at a barrier."""
    import torch

    if rank == 0:
        from livo.train.evaluation import flat, run_hook

        value_encoder = objective.module if config.loss == "livo" else None
        unet = pipeline.unet
        training = unet.training
        unet.eval()
        assert config.eval.hook is not None  # validate() requires one when evaluations are asked for
        with torch.no_grad():
            metrics = run_hook(
                config.eval.hook,
                pipeline,
                value_encoder,
                per_prompt=config.eval.per_prompt,
                steps=config.eval.steps,
                guidance_scale=config.eval.guidance_scale,
                seed=config.eval.seed,
                benign=config.eval.benign,
            )
        unet.train(training)
        numbers = flat(metrics)
        result.evaluations.append({"step": step, **numbers, "summary": metrics.get("summary")})
        log.evaluation(step, numbers)
    barrier()


def export(objective: Any, output: Path, config: TrainConfig) -> Path:
    """Write the trained weights atomically: ``value_encoder/`` (transformers layout, safetensors,
    fp32) for LiVO; ``unet/`` (diffusers layout) or ``unet_lora/`` (diffusers LoRA file) for DPO."""
    import torch

    name = {"livo": "value_encoder", "dpo": "unet" if config.dpo_target == "full" else "unet_lora"}[config.loss]
    target = output / name
    module = objective.module
    with replace_folder(target) as staging:
        if config.loss == "livo":
            copy.deepcopy(module).to(dtype=torch.float32).save_pretrained(staging)
        elif config.dpo_target == "full":
            module.save_pretrained(staging)
        else:
            from diffusers import StableDiffusionPipeline
            from diffusers.utils import convert_state_dict_to_diffusers
            from peft.utils import get_peft_model_state_dict

            layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(module))
            metadata = module.peft_config["default"].to_dict()  # carries lora_alpha, so loading scales alike
            StableDiffusionPipeline.save_lora_weights(
                str(staging), unet_lora_layers=layers, unet_lora_adapter_metadata=metadata
            )
    return target
