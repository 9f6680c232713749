"""Will this training run fit in memory? Measured before the optimizer allocates anything, so that a run
too large for the machine stops with the figures instead of being killed by the OOM killer an hour
(or, at SD 1.5's size, a minute) in.

The need of a rank is added up from what is known exactly or measured here:

* the weights already resident (measured: the process's RSS, or the GPU's allocated bytes);
* gradients of the trainable parameters and the optimizer's state (two fp32 Adam moments and, under
  ZeRO, DeepSpeed's flat fp32 copies of the trainable parameters and of their gradients; with mixed
  precision the fp32 master weights), partitioned over the ranks as ZeRO-2 partitions them, and
  ZeRO's reduce and all-gather buckets;
* activations, measured on one forward and backward pass of the objective on a synthetic micro-batch
  of one pair at the dataset's image size, times the micro-batch: on a GPU the allocator's peak over
  the resident bytes, on the CPU the bytes the forward pass saves for the backward (RSS cannot be
  reset, and freed memory is not always returned to the system, so its growth says little).

The count leaves out the allocator's fragmentation and short-lived copies, so a run that passes can
still come close to the limit. The available memory is the host's (``MemAvailable``, and the cgroup's limit when lower) shared by the
ranks on this host, or the GPU's free memory; ``memory_budget_gib`` in the training config replaces it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from livo.errors import ConfigError

GIB = float(2**30)


@dataclass
class MemoryNeed:
    """Bytes per rank by part, and the bytes available to each rank."""

    parts: dict[str, int] = field(default_factory=dict)
    available: int = 0
    where: str = ""

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def describe(self) -> str:
        parts = ", ".join(f"{name} {size / GIB:.2f}" for name, size in self.parts.items())
        return f"{self.total / GIB:.2f} GiB per rank ({parts}); {self.available / GIB:.2f} GiB available {self.where}"


def optimizer_bytes(trainable: int, world: int, mixed_precision: bool, bucket_elements: int = 0) -> dict[str, int]:
    """Gradients and optimizer state of ``trainable`` parameters under ZeRO-2 over ``world`` ranks:
    full-size gradients while backward runs; DeepSpeed's fp32 copies of this rank's partition of the
    parameters and of their gradients, and the Adam moments, split over the ranks (plus fp32 master
    weights with bf16/fp16); and its reduce and all-gather buckets (``bucket_elements`` in all)."""
    partition = -(-trainable // world)
    parts = {
        "gradients": 4 * trainable,
        "Adam moments": 8 * partition,
        "fp32 parameter partition": 4 * partition,
        "fp32 gradient partition": 4 * partition,
    }
    if mixed_precision:
        parts["fp32 master weights"] = 4 * partition
    if bucket_elements:
        parts["DeepSpeed buckets"] = 4 * min(bucket_elements, 2 * trainable)
    return parts


def bucket_elements(deepspeed: dict[str, Any]) -> int:
    """Elements of ZeRO's reduce and all-gather buckets (DeepSpeed's defaults when unset: 5e8 each)."""
    zero = deepspeed.get("zero_optimization", {})
    return int(zero.get("reduce_bucket_size", 500_000_000)) + int(zero.get("allgather_bucket_size", 500_000_000))


def host_available_bytes(ranks_on_host: int) -> tuple[int, str]:
    """Memory this rank may still use on the host: MemAvailable (or the cgroup's headroom when lower),
    shared by the ranks on it."""
    import psutil

    available = psutil.virtual_memory().available
    where = "on this host"
    limit = _cgroup_headroom()
    if limit is not None and limit < available:
        available, where = limit, "in this cgroup"
    if ranks_on_host > 1:
        where += f", shared by {ranks_on_host} ranks"
    return available // max(1, ranks_on_host), where


def _cgroup_headroom() -> int | None:
    try:
        limit = open("/sys/fs/cgroup/memory.max").read().strip()
        current = int(open("/sys/fs/cgroup/memory.current").read().strip())
    except (OSError, ValueError):
        return None
    if limit == "max":
        return None
    return max(0, int(limit) - current)


def saved_activation_bytes(objective: Any, batch: Any, generator: Any) -> int:
    """Bytes the objective's forward saves for its backward on ``batch`` (each storage once, weights
    left out): the activation memory of a step, exact and the same on every run. With gradient
    checkpointing only the checkpoints are saved, as in training."""
    import torch

    weights = {
        p.untyped_storage().data_ptr()
        for module in _modules(objective)
        for p in [*module.parameters(), *module.buffers()]
    }
    seen: set[int] = set()
    total = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        storage = tensor.untyped_storage()
        pointer = storage.data_ptr()
        if pointer not in weights and pointer not in seen:
            seen.add(pointer)
            total += storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss, _ = objective.compute(objective.module, batch, generator)
    loss.backward()
    return total


def _modules(objective: Any) -> list[Any]:
    pipeline = objective.pipeline
    found = [getattr(pipeline, name, None) for name in ("unet", "vae", "text_encoder")]
    found += [objective.module, getattr(objective, "reference", None)]
    return [module for module in found if module is not None]


def measure_need(
    objective: Any,
    config: Any,
    device: Any,
    image_size: tuple[int, int],
    world: int,
    buckets: int = 0,
    *,
    mixed_precision: bool,
) -> MemoryNeed:
    """A rank's need: resident weights, optimizer bytes, and activations measured on one synthetic
    pair. ``mixed_precision``: the run computes in bf16/fp16 (``precision`` resolved for the device)."""
    import torch

    from livo.train.pairs_input import PairBatch

    trainable = objective.trainable_parameters()
    height, width = image_size
    pixels = torch.zeros(1, 3, height, width, device=device)
    batch = PairBatch(prompts=["a photo"], values=["a value"], aligned=pixels, violating=pixels.clone())
    generator = torch.Generator(device=device).manual_seed(0)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        resident = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        saved_activation_bytes(objective, batch, generator)
        torch.cuda.synchronize(device)
        # the allocator's peak also holds the probe's gradients, counted below on their own
        activations = torch.cuda.max_memory_allocated(device) - resident - 4 * count_of(trainable)
    else:
        import psutil

        resident = psutil.Process().memory_info().rss
        activations = saved_activation_bytes(objective, batch, generator)
    for parameter in trainable:
        parameter.grad = None
    parts = {"resident weights": resident}
    parts |= optimizer_bytes(count_of(trainable), world, mixed_precision=mixed_precision, bucket_elements=buckets)
    parts["activations"] = max(0, activations) * config.micro_batch_size
    need = MemoryNeed(parts=parts)
    if config.memory_budget_gib is not None:
        need.available, need.where = int(config.memory_budget_gib * GIB), "(memory_budget_gib)"
    elif device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        need.available, need.where = free + resident, f"on {torch.cuda.get_device_name(device)}"
    else:
        ranks_on_host = ranks_on_this_host()
        headroom, need.where = host_available_bytes(ranks_on_host)
        need.available = headroom + resident
    return need


def ranks_on_this_host() -> int:
    """The ranks sharing this host's memory: torchrun sets ``LOCAL_WORLD_SIZE``, DeepSpeed's launcher
    ``LOCAL_SIZE`` (without either, each rank took the whole host's free memory as its own)."""
    for name in ("LOCAL_WORLD_SIZE", "LOCAL_SIZE"):
        if os.environ.get(name, "").isdigit():
            return max(1, int(os.environ[name]))
    return 1


def count_of(parameters: list[Any]) -> int:
    return sum(p.numel() for p in parameters)


def check_fits(need: MemoryNeed, config: Any) -> None:
    """Raises ConfigError with the figures when the need exceeds what is available."""
    if need.total <= need.available:
        return
    hints = []
    if config.micro_batch_size > 1:
        hints.append("a smaller micro_batch_size (with gradient_accumulation_steps to keep the batch)")
    if not config.gradient_checkpointing:
        hints.append("gradient_checkpointing: true")
    hints.append("smaller images in the dataset, more ranks (ZeRO-2 splits the optimizer state), or a larger machine")
    if config.loss == "dpo" and config.dpo_target == "full":
        hints.insert(0, "dpo_target: lora")
    raise ConfigError(
        f"training does not fit in memory: needs {need.describe()}. Try {'; '.join(hints)} "
        "(memory_check: false skips this check)"
    )
