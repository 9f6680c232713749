"""Learning-rate schedules by step, shared by every trainer of the project (the value-encoder trainer
and the toy world's base-model recipe).

Linear warm-up, then one of diffusers' schedule names: ``constant`` holds the peak, ``linear`` and
``cosine`` decay it to ``final_fraction`` of the peak (0 by default) at ``max_steps``. The warm-up is
one step ahead of diffusers': step ``s`` of ``W`` trains at ``(s + 1) / W`` of the peak, where
diffusers' ``get_scheduler`` gives ``s / W``, whose first step trains at rate 0 and so changes
nothing; the peak is reached at step ``W - 1`` instead of ``W``. After the warm-up the two agree. A pure
function of the step, so a resumed run (whose LambdaLR restarts from the saved step count) follows
the same curve as an uninterrupted one.
"""

from __future__ import annotations

import math

SCHEDULES = ("constant", "linear", "cosine")


def scheduled_lr(
    peak: float, schedule: str, warmup_steps: int, max_steps: int, step: int, final_fraction: float = 0.0
) -> float:
    """The learning rate at optimizer step ``step`` (0-based) for a peak of ``peak``."""
    if warmup_steps and step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    if schedule == "constant":
        return peak
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    if schedule == "linear":
        return peak * (final_fraction + (1.0 - final_fraction) * (1.0 - progress))
    if schedule == "cosine":
        return peak * (final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * progress)))
    raise ValueError(f"unknown learning-rate schedule {schedule!r} (known: {', '.join(SCHEDULES)})")


def lr_factor(schedule: str, warmup_steps: int, max_steps: int, step: int, final_fraction: float = 0.0) -> float:
    """Multiplier of the peak learning rate (what ``torch.optim.lr_scheduler.LambdaLR`` takes)."""
    return scheduled_lr(1.0, schedule, warmup_steps, max_steps, step, final_fraction)
