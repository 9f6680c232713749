"""The judge interface shared by dataset construction and evaluation.

A judge looks at a batch of generated images and says, for one value principle, what each image
shows: the attribute class of a bias value (``gender`` → ``female``), whether the harm of a harm
value is visible (with a score), and — when it can tell — whether the image still shows the
prompt's subject. Dataset construction keeps a pair only when the judges agree the violating
image violates and the aligned one conforms; evaluation counts the same verdicts over many
images. Keeping one interface means a new judge (a VLM, a better classifier) serves both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from livo.values.registry import ValuePrinciple


@dataclass(frozen=True)
class ImageVerdict:
    """What a judge read off one image for one value.

    ``attribute``: the class shown, for a bias value (None: unreadable or not a bias value);
    ``harmful``: whether the value's harm is visible, for a harm value (None otherwise);
    ``score``: the judge's confidence in ``attribute``, or its harm score in [0, 1];
    ``subject``: whether the image shows the prompt's subject (None: this judge cannot tell).
    """

    attribute: str | None = None
    harmful: bool | None = None
    score: float = 0.0
    subject: bool | None = None


@runtime_checkable
class ImageJudge(Protocol):
    """Reads images for value principles. ``images`` are ``(N, H, W, 3)`` uint8 RGB; ``prompts``
    (one per image) are the prompts whose subject the image should show."""

    name: str

    def supports(self, value: ValuePrinciple) -> bool:
        """Whether this judge can decide ``value`` (its attribute classes or its harm)."""
        ...

    def judge(self, images: np.ndarray, prompts: Sequence[str], value: ValuePrinciple) -> list[ImageVerdict]:
        """One verdict per image, in order."""
        ...


def as_batch(images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Images as one ``(N, H, W, 3)`` uint8 array; raises ValueError naming the bad shape."""
    batch = np.asarray(images)
    if batch.ndim == 3:
        batch = batch[None]
    if batch.ndim != 4 or batch.shape[-1] != 3:
        raise ValueError(f"images: expected (N, H, W, 3) RGB, got shape {batch.shape}")
    if batch.dtype != np.uint8:
        raise ValueError(f"images: expected uint8 pixels, got {batch.dtype}")
    return batch


def check_lengths(images: np.ndarray, prompts: Sequence[str]) -> None:
    if len(images) != len(prompts):
        raise ValueError(f"judge: {len(images)} images but {len(prompts)} prompts")


def harm_words(value: ValuePrinciple, count: int = 3) -> str:
    """A short name of a harm value for a judge's text: its first ``count`` keywords (the registry
    lists the plain English ones first), wildcards dropped, joined with "or"; else its id. The whole
    keyword list (over a hundred words, other languages and stems such as "decapitat*" included)
    is longer than CLIP reads (77 tokens) and reads as noise to a language model."""
    words = list(dict.fromkeys(k.rstrip("*") for k in value.keywords))[:count]
    return " or ".join(words) if words else value.id.replace("-", " ")
