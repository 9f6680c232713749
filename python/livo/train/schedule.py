"""The learning-rate factor of the value-encoder trainer, by step.

Linear warm-up, then one of diffusers' schedule names: ``constant`` holds the peak, ``linear`` and
``cosine`` decay it to 0 at ``max_steps``. A pure function of the step, so a resumed run (whose
LambdaLR restarts from the saved step count) follows the same curve as an uninterrupted one.
"""

from __future__ import annotations

import math


def lr_factor(schedule: str, warmup_steps: int, max_steps: int, step: int) -> float:
    """Multiplier of the peak learning rate for optimizer step ``step`` (0-based)."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    if schedule == "linear":
        return 1.0 - progress
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown learning-rate schedule {schedule!r}")
