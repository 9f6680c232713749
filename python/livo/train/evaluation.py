"""Periodic evaluation of a model being trained: a ``livo.train_evaluations`` plug-in named in the
training config (``eval.hook``; the toy world's is ``toyworld``) makes the numbers, this module runs
it and flattens them for the logs.

A hook is called as ``hook(base_pipeline, value_encoder, per_prompt=, steps=, guidance_scale=, seed=,
benign=)`` (``value_encoder`` None when the U-Net itself is being trained) and returns a mapping of
numbers, with optional ``summary`` (per-category table) and ``prompts`` (per-prompt rows).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from livo.plugins import TRAIN_EVALUATIONS, load_plugin


def run_hook(
    name: str,
    base: Any,
    value_encoder: Any | None,
    *,
    per_prompt: int,
    steps: int,
    guidance_scale: float,
    seed: int,
    benign: bool,
) -> dict[str, Any]:
    hook = load_plugin(TRAIN_EVALUATIONS, name)
    metrics: dict[str, Any] = hook(
        base, value_encoder, per_prompt=per_prompt, steps=steps, guidance_scale=guidance_scale, seed=seed, benign=benign
    )
    return metrics


def flat(metrics: dict[str, Any]) -> dict[str, float]:
    """The scalar numbers of an evaluation (for logs)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float, np.floating))}
