"""The training job's typed configuration, read from YAML (``livo train CONFIG``) or built in Python.

Defaults are LiVO's published recipe for a real model (the paper's reference implementation): β=1000, α=500, γ1=1, γ2=0.5,
AdamW (0.9, 0.999, weight decay 1e-2, eps 1e-8), constant lr 1e-6, gradient clipping 1.0, micro
batch 8, 15,000 steps. A toy-world config overrides the learning rate, batch and steps (see
``services/train/toyworld_livo.yaml``). Unknown keys and bad values fail at load time with a message
that names the field, before any model is loaded.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from livo.errors import ConfigError, InputError
from livo.lr_schedule import SCHEDULES
from livo.overrides import check_scalar_types, set_dotted
from livo.plugins import TRAIN_EVALUATIONS, has_plugin, plugin_names

LOSSES = ("livo", "dpo")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DPO_TARGETS = ("lora", "full")
LR_SCHEDULERS = SCHEDULES

# The ZeRO-2 configuration used when none is given; services/train/ds_zero2.json holds the same
# settings for launch scripts (a test keeps the two equal). Batch sizes, clipping and precision
# are filled in from the TrainConfig, so they are never stated twice.
DEFAULT_DEEPSPEED: dict[str, Any] = {
    "zero_optimization": {
        "stage": 2,
        "contiguous_gradients": True,
        "overlap_comm": False,
        "reduce_scatter": True,
        "reduce_bucket_size": 50_000_000,
        "allgather_bucket_size": 50_000_000,
    },
    "steps_per_print": 1_000_000_000,
    "wall_clock_breakdown": False,
}


@dataclass
class EvalConfig:
    """Periodic evaluation (``every`` optimizer steps; 0 = off) by ``hook``, a ``livo.train_evaluations``
    plug-in (``toyworld``: D1 of neutral people-prompts with the bias value applied to each image with
    probability 0.5, harm rate of harmful prompts with the harm value always applied, subject fidelity
    of benign prompts; see ``livo.train.evaluation`` for what a hook is)."""

    hook: str | None = None
    every: int = 0
    per_prompt: int = 16
    steps: int = 25
    guidance_scale: float = 5.0
    seed: int = 12345
    benign: bool = False  # benign prompts get no value, so LiVO leaves them bit-identical; DPO does not
    final: bool = False  # also evaluate after the last step


@dataclass
class TrainConfig:
    """One training run. ``model``: diffusers folder, hub id or ``builtin:NAME`` (default: the toy model);
    ``dataset``: a shard dataset folder (PAIR_SCHEMA); ``output``: run folder (checkpoints/, logs,
    value_encoder/ or unet/ export)."""

    dataset: str
    output: str
    model: str = "builtin:toyworld"
    split: str = "train"
    loss: str = "livo"
    # LiVO
    beta: float = 1000.0
    alpha: float = 500.0
    gamma1: float = 1.0
    gamma2: float = 0.5
    # Diffusion-DPO baseline
    beta_dpo: float = 2500.0
    dpo_target: str = "lora"
    lora_rank: int = 8
    lora_alpha: float = 8.0
    # optimisation
    learning_rate: float = 1e-6
    adam_betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-2
    adam_eps: float = 1e-8
    grad_clip: float = 1.0
    warmup_steps: int = 0
    # after warm-up: hold (constant) or decay to 0 at max_steps (linear, cosine), as diffusers names them
    lr_scheduler: str = "constant"
    micro_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_steps: int = 15000
    seed: int = 0
    precision: str = "auto"
    gradient_checkpointing: bool = False
    # input
    shuffle_buffer: int = 1024
    num_workers: int = 0
    # runtime
    deepspeed_config: str | None = None
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 1
    tensorboard: bool = True
    progress: bool = True
    threads: int | None = None
    eval: EvalConfig = field(default_factory=EvalConfig)

    def validate(self) -> None:
        if self.loss not in LOSSES:
            raise ConfigError(f"loss: {self.loss!r} is not one of {', '.join(LOSSES)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision: {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if self.lr_scheduler not in LR_SCHEDULERS:
            raise ConfigError(f"lr_scheduler: {self.lr_scheduler!r} is not one of {', '.join(LR_SCHEDULERS)}")
        if self.dpo_target not in DPO_TARGETS:
            raise ConfigError(f"dpo_target: {self.dpo_target!r} is not one of {', '.join(DPO_TARGETS)}")
        for name in ("micro_batch_size", "gradient_accumulation_steps", "max_steps", "log_every",
                     "shuffle_buffer", "lora_rank", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be at least 1, got {getattr(self, name)}")
        for name in ("checkpoint_every", "warmup_steps", "num_workers"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be 0 or more, got {getattr(self, name)}")
        if not 0 < self.learning_rate < 1:
            raise ConfigError(f"learning_rate: must be in (0, 1), got {self.learning_rate}")
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            raise ConfigError(f"adam_betas: expected two numbers in [0, 1), got {self.adam_betas}")
        for name in ("beta", "alpha", "beta_dpo", "grad_clip"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be positive, got {getattr(self, name)}")
        if self.eval.every < 0 or self.eval.per_prompt < 1 or self.eval.steps < 1:
            raise ConfigError("eval: every must be >= 0, per_prompt and steps >= 1")
        if (self.eval.every or self.eval.final) and self.eval.hook is None:
            raise ConfigError(f"eval.hook: evaluations are asked for (eval.every/eval.final) but no hook is named; "
                              f"give a training evaluation ({', '.join(plugin_names(TRAIN_EVALUATIONS)) or 'none installed'})")
        if self.eval.hook is not None and not has_plugin(TRAIN_EVALUATIONS, self.eval.hook):
            raise ConfigError(f"eval.hook: no training evaluation named {self.eval.hook!r} "
                              f"(known: {', '.join(plugin_names(TRAIN_EVALUATIONS))})")
        if self.deepspeed_config is not None and not Path(self.deepspeed_config).is_file():
            raise ConfigError(f"deepspeed_config: {self.deepspeed_config} does not exist")
        check_dataset(self.dataset, self.split)

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["adam_betas"] = list(self.adam_betas)
        return values


def check_dataset(directory: str, split: str) -> None:
    """Fail fast on a missing folder, a folder without a manifest, an unknown split or a split
    without rows, naming the dataset."""
    from livo.data.shards import Manifest

    path = Path(directory)
    if not path.is_dir():
        raise InputError(f"dataset {directory}: no such folder (build one with `livo toyworld pairs` or the dataset builder)")
    try:
        manifest = Manifest.load(path)
    except FileNotFoundError as error:
        raise InputError(f"dataset {directory}: no manifest.json, not a shard dataset") from error
    rows = manifest.rows(split)
    if rows == 0:
        raise InputError(f"dataset {directory}: split {split!r} has no rows (empty shards)")


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(known)})")
    kwargs = check_scalar_types(cls, values, where)
    if cls is TrainConfig and isinstance(kwargs.get("eval"), dict):
        kwargs["eval"] = _build(EvalConfig, kwargs["eval"], f"{where}.eval")
    if "adam_betas" in kwargs:
        kwargs["adam_betas"] = tuple(kwargs["adam_betas"])
    for name in ("dataset", "output"):
        if cls is TrainConfig and name not in kwargs:
            raise ConfigError(f"{where}: missing required key {name!r}")
    return cls(**kwargs)


def config_from_dict(values: dict[str, Any], base_dir: str | os.PathLike[str] | None = None,
                     where: str = "config") -> TrainConfig:
    """A validated :class:`TrainConfig` from plain values; relative ``deepspeed_config`` paths are
    read relative to ``base_dir`` (the YAML file's folder) when they exist there."""
    config = _build(TrainConfig, values, where)
    if base_dir is not None and config.deepspeed_config and not Path(config.deepspeed_config).is_absolute():
        candidate = Path(base_dir) / config.deepspeed_config
        if candidate.is_file():
            config.deepspeed_config = str(candidate)
    config.validate()
    return config


def load_config(path: str | os.PathLike[str], overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML training config; ``overrides`` (e.g. from the command line) win over the file."""
    import yaml

    file = Path(path)
    if not file.is_file():
        raise InputError(f"training config {path}: no such file")
    try:
        values = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"training config {path}: not valid YAML: {error}") from error
    if not isinstance(values, dict):
        raise ConfigError(f"training config {path}: expected a mapping of keys to values")
    for key, value in (overrides or {}).items():
        if value is not None:
            set_dotted(values, key, value, str(path))
    return config_from_dict(values, base_dir=file.parent, where=str(path))

