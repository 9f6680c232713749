"""The training job's typed configuration, read from YAML (``livo train CONFIG``) or built in Python.

Defaults are LiVO's published recipe for a real model (the paper's reference implementation): β=1000, α=500, γ1=1, γ2=0.5,
AdamW (0.9, 0.999, weight decay 1e-2, eps 1e-8), constant lr 1e-6, gradient clipping 1.0, micro
batch 8, 15,000 steps. A toy-world config overrides the learning rate, batch and steps (see
``services/train/toyworld_livo.yaml``). Unknown keys and bad values fail at load time with a message
that names the field, before any model is loaded (``livo.config``: one error per field, e.g.
``run.yaml: field eval.per_prompt: Input should be a valid integer``). YAML 1.1 reads ``1e-6`` (no
dot) as a string; float fields take such strings, so learning rates can be written that way.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from livo.config import StrictModel, apply_overrides, parse_model, read_yaml, resolve_paths
from livo.errors import ConfigError, InputError
from livo.lr_schedule import SCHEDULES
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


class TrainEvalConfig(StrictModel):
    """Periodic evaluation (``every`` optimizer steps; 0 = off) by ``hook``, a ``livo.train_evaluations``
    plug-in (``toyworld``: D1 of neutral people-prompts with the bias value applied to each image with
    probability 0.5, harm rate of harmful prompts with the harm value always applied, subject fidelity
    of benign prompts; see ``livo.train.evaluation`` for what a hook is)."""

    hook: str | None = None
    every: int = Field(0, ge=0)
    per_prompt: int = Field(16, ge=1)
    steps: int = Field(25, ge=1)
    guidance_scale: float = 5.0
    seed: int = 12345
    benign: bool = False  # benign prompts get no value, so LiVO leaves them bit-identical; DPO does not
    final: bool = False  # also evaluate after the last step

    @field_validator("hook")
    @classmethod
    def _installed(cls, hook: str | None) -> str | None:
        if hook is not None and not has_plugin(TRAIN_EVALUATIONS, hook):
            raise ValueError(
                f"no training evaluation named {hook!r} (known: {', '.join(plugin_names(TRAIN_EVALUATIONS))})"
            )
        return hook

    @model_validator(mode="after")
    def _hook_when_asked(self) -> TrainEvalConfig:
        if (self.every or self.final) and self.hook is None:
            known = ", ".join(plugin_names(TRAIN_EVALUATIONS)) or "none installed"
            raise ValueError(
                f"evaluations are asked for (every/final) but no hook is named; give a training evaluation ({known})"
            )
        return self


class TrainConfig(StrictModel):
    """One training run. ``model``: diffusers folder, hub id or ``builtin:NAME`` (default: the toy model);
    ``dataset``: a shard dataset folder (PAIR_SCHEMA); ``output``: run folder (checkpoints/, logs,
    value_encoder/ or unet/ export)."""

    dataset: str
    output: str
    model: str = "builtin:toyworld"
    split: str = "train"
    loss: Literal["livo", "dpo"] = "livo"
    # LiVO
    beta: float = Field(1000.0, gt=0)
    alpha: float = Field(500.0, gt=0)
    gamma1: float = 1.0
    gamma2: float = 0.5
    # Keep the value encoder's token embeddings at the base text encoder's: a word absent from the
    # pairs then reads as the base model reads it, and only the layers above learn the value.
    freeze_token_embeddings: bool = False
    # Diffusion-DPO baseline
    beta_dpo: float = Field(5000.0, gt=0)  # the published convention: L = −log σ(−½ β_D Δ)
    dpo_target: Literal["lora", "full"] = "lora"
    lora_rank: int = Field(8, ge=1)
    lora_alpha: float = 8.0
    # optimisation
    learning_rate: float = Field(1e-6, gt=0, lt=1)
    adam_betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-2
    adam_eps: float = 1e-8
    grad_clip: float = Field(1.0, gt=0)
    warmup_steps: int = Field(0, ge=0)
    # after warm-up: hold (constant) or decay to 0 at max_steps (linear, cosine), as diffusers names them
    lr_scheduler: Literal["constant", "linear", "cosine"] = "constant"
    micro_batch_size: int = Field(8, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_steps: int = Field(15000, ge=1)
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    gradient_checkpointing: bool = False
    # input
    # None: images as stored, every pair one size (LiVO's own datasets). N: each image resized (shorter
    # side N, bilinear) and centre-cropped to N x N, as diffusers' training scripts prepare theirs:
    # for datasets of other tools, whose images come in several sizes (a multiple of 8 for SD's VAE).
    resolution: int | None = Field(None, ge=8)
    shuffle_buffer: int = Field(1024, ge=1)
    num_workers: int = Field(0, ge=0)
    # runtime
    deepspeed_config: str | None = None
    checkpoint_every: int = Field(500, ge=0)
    keep_checkpoints: int = Field(2, ge=1)
    # steps at which the trained weights are also exported, to OUTPUT/exports/step<N>/ (learning curves)
    export_steps: list[int] = Field(default_factory=list)
    log_every: int = Field(1, ge=1)
    tensorboard: bool = True
    progress: bool = True
    threads: int | None = Field(None, ge=1)
    # a rank that waits longer than this for the others at a collective fails the run (a peer lost
    # without a reset never answers); torch's default, 30 min. Must exceed the longest evaluation
    # and checkpoint save, which the other ranks wait out at a barrier.
    collective_timeout_s: float = Field(1800.0, gt=0)
    # fail before training when a rank's measured need exceeds the memory available to it
    memory_check: bool = True
    memory_budget_gib: float | None = Field(None, gt=0)  # None: what the host (or GPU) reports free
    eval: TrainEvalConfig = Field(default_factory=TrainEvalConfig)

    @field_validator("dataset", "output", "model", "deepspeed_config", mode="before")
    @classmethod
    def _path_as_text(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @field_validator("export_steps")
    @classmethod
    def _positive_distinct_steps(cls, steps: list[int]) -> list[int]:
        if any(step < 1 for step in steps):
            raise ValueError(f"steps are counted from 1, got {steps}")
        if len(set(steps)) != len(steps):
            raise ValueError(f"a step is given twice: {steps}")
        return sorted(steps)

    @model_validator(mode="after")
    def _livo_only_settings(self) -> TrainConfig:
        if self.freeze_token_embeddings and self.loss != "livo":
            raise ValueError("freeze_token_embeddings applies to the LiVO value encoder only, not loss: dpo")
        return self

    @field_validator("adam_betas")
    @classmethod
    def _betas_in_range(cls, betas: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in betas):
            raise ValueError(f"expected two numbers in [0, 1), got {list(betas)}")
        return betas

    def validate_inputs(self) -> None:
        """The checks that read the disk: the DeepSpeed config exists, the dataset has the split."""
        if self.deepspeed_config is not None and not Path(self.deepspeed_config).is_file():
            raise ConfigError(f"deepspeed_config: {self.deepspeed_config} does not exist")
        check_dataset(self.dataset, self.split)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def check_dataset(directory: str, split: str) -> None:
    """Fail fast on a missing folder, a folder without a manifest, an unknown split or a split
    without rows, naming the dataset."""
    from livo.data.shards import Manifest

    path = Path(directory)
    if path.is_file():
        raise InputError(
            f"dataset {directory}: a file; a pair dataset is a folder of shards with a manifest.json "
            "(`livo shards write` makes one from a table of pairs)"
        )
    if not path.is_dir():
        raise InputError(
            f"dataset {directory}: no such folder (build one with `livo toyworld pairs` or the dataset builder)"
        )
    try:
        manifest = Manifest.load(path)
    except FileNotFoundError as error:
        raise InputError(f"dataset {directory}: no manifest.json, not a shard dataset") from error
    rows = manifest.rows(split)
    if rows == 0:
        raise InputError(f"dataset {directory}: split {split!r} has no rows (empty shards)")
    _check_pair_columns(directory, manifest, split)


def _check_pair_columns(directory: str, manifest: Any, split: str) -> None:
    """The columns training reads, present and typed, in the split's first shard: a table written
    without them (another tool's, or ``livo shards write`` without ``--pair-schema``) failed after
    the model loaded, in a KeyError or a TypeError."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from livo.data.schema import PAIR_SCHEMA_VERSION_1
    from livo.train.pairs_input import COLUMNS, COLUMNS_VERSION_1

    needed = COLUMNS_VERSION_1 if manifest.schema_version == PAIR_SCHEMA_VERSION_1 else COLUMNS
    shard = next(s for s in manifest.shards_of(split) if s.rows)
    try:
        schema = pq.read_schema(manifest.directory / shard.name)
    except FileNotFoundError:
        raise InputError(f"dataset {directory}: shard {shard.name} is listed in the manifest but missing") from None
    missing = [name for name in needed if name not in schema.names]
    if missing:
        raise InputError(
            f"dataset {directory}: shard {shard.name} has no {', '.join(missing)} column; training reads "
            f"{', '.join(needed)} ({manifest.schema_version}; docs/dataset-format.md), the shard has {schema.names}"
        )
    texts = (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view)
    binary = (pa.types.is_binary, pa.types.is_large_binary, pa.types.is_binary_view)
    for name in needed:
        kind = schema.field(name).type
        if name == "value_texts":
            fits = pa.types.is_list(kind) or pa.types.is_large_list(kind)
            fits = fits and any(check(kind.value_type) for check in texts)
            expected = "a list of strings"
        elif name.endswith("_image"):
            fits, expected = any(check(kind) for check in binary), "image bytes (PNG)"
        else:
            fits, expected = any(check(kind) for check in texts), "strings"
        if not fits:
            raise InputError(f"dataset {directory}: shard {shard.name}: column {name} is {kind}, not {expected}")


# Fields that hold paths: relative ones are relative to the YAML file's folder (``livo.config``).
PATH_KEYS = ("dataset", "output", "deepspeed_config")
PATH_KEYS_IF_PRESENT = ("model",)  # also a hub id or builtin:NAME


# Fields that `livo train` also takes as flags: their errors name the flag.
FLAGS = {
    "output": "--output",
    "dataset": "--dataset",
    "model": "--model",
    "max_steps": "--max-steps",
    "loss": "--loss",
    "threads": "--threads",
}


def config_from_dict(values: dict[str, Any], where: str = "config", *, overridden: Collection[str] = ()) -> TrainConfig:
    """A validated :class:`TrainConfig` from plain values (paths as given); errors in the fields that
    ``--set`` wrote (``overridden``, dotted) name the override."""
    config = parse_model(TrainConfig, values, where, FLAGS, overridden=overridden)
    config.validate_inputs()
    return config


def load_config(path: str | os.PathLike[str], overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML training config. Relative paths in it are relative to the file's folder;
    ``overrides`` (e.g. from the command line, dotted; paths relative to the working directory) win."""
    values = resolve_paths(read_yaml(path, "training config"), Path(path).parent, PATH_KEYS, PATH_KEYS_IF_PRESENT)
    values = apply_overrides(values, overrides, str(path))
    return config_from_dict(values, where=str(path), overridden=list(overrides or {}))
