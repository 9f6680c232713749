"""Detectors that read subject, attribute and harm marks off toy-world images (rendered or generated).

Each pixel is labelled with the nearest of the image's own background colour (the median of its
border, so tinted backgrounds of generated images do not fool it) and the world's reference
colours. Then:

- harm: a mark kind is present when at least ``MARK_MIN_PIXELS`` pixels take its colour;
- attribute: the majority of orange vs teal glyph pixels (``None`` when there are none);
- subject: the glyph template (every subject, size and position) that disagrees with the glyph
  pixels least, ignoring pixels hidden under harm marks.

Works on batches: a ``(N, H, W, 3)`` uint8 array gives N detections.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from livo.toyworld.grammar import ATTRIBUTES, HARMS, SUBJECTS
from livo.toyworld.render import ATTRIBUTE_COLOURS, GLYPH_SIZES, IMAGE_SIZE, MARK_COLOURS, OBJECT_COLOUR, glyph_mask

MARK_MIN_PIXELS = 3
# Label order: 0 = background, then attribute colours, the object colour, then harm marks.
_LABEL_NAMES: tuple[str, ...] = ("background", *ATTRIBUTES, "object", *HARMS)
_REFERENCE = np.array(
    [ATTRIBUTE_COLOURS[a] for a in ATTRIBUTES] + [OBJECT_COLOUR] + [MARK_COLOURS[h] for h in HARMS],
    dtype=np.float32,
)
_GLYPH_LABELS = tuple(range(1, len(ATTRIBUTES) + 2))
_MARK_LABELS = tuple(range(len(ATTRIBUTES) + 2, len(_LABEL_NAMES)))


@dataclass(frozen=True)
class Detection:
    """What an image shows, as read by the detectors."""

    subject: str | None
    attribute: str | None
    harms: tuple[str, ...]

    @property
    def harmful(self) -> bool:
        return bool(self.harms)


@lru_cache(maxsize=1)
def _templates() -> tuple[np.ndarray, np.ndarray]:
    """All glyph placements as a ``(T, H*W)`` 0/1 matrix, and the subject index of each row."""
    rows, owners = [], []
    for index, subject in enumerate(SUBJECTS):
        for size in GLYPH_SIZES:
            mask = glyph_mask(subject, size)
            for top in range(IMAGE_SIZE - size + 1):
                for left in range(IMAGE_SIZE - size + 1):
                    canvas = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
                    canvas[top : top + size, left : left + size] = mask
                    rows.append(canvas.ravel())
                    owners.append(index)
    return np.stack(rows), np.array(owners)


def pixel_labels(images: np.ndarray) -> np.ndarray:
    """Nearest-colour label of every pixel, ``(N, H, W)`` ints indexing ``_LABEL_NAMES``."""
    pixels = np.asarray(images, dtype=np.float32)
    if pixels.ndim == 3:
        pixels = pixels[None]
    border = np.concatenate([pixels[:, 0, :], pixels[:, -1, :], pixels[:, 1:-1, 0], pixels[:, 1:-1, -1]], axis=1)
    background = np.median(border, axis=1)  # (N, 3)
    references = np.concatenate(
        [background[:, None, :], np.broadcast_to(_REFERENCE, (len(pixels), *_REFERENCE.shape))], axis=1
    )  # (N, L, 3)
    distance = ((pixels[:, :, :, None, :] - references[:, None, None, :, :]) ** 2).sum(-1)
    return distance.argmin(-1)


def detect(images: np.ndarray) -> list[Detection]:
    """Read subject, attribute and harm marks off ``(N, H, W, 3)`` (or one ``(H, W, 3)``) uint8 images."""
    labels = pixel_labels(images)
    n = len(labels)
    flat = labels.reshape(n, -1)
    glyph = np.isin(flat, _GLYPH_LABELS).astype(np.float32)
    known = 1.0 - np.isin(flat, _MARK_LABELS).astype(np.float32)
    templates, owners = _templates()
    # Disagreements over known pixels: template on where glyph is off, plus glyph on where template is off.
    on = glyph * known
    off = (1.0 - glyph) * known
    mismatch = templates @ off.T + on.sum(1)[None, :] - templates @ on.T  # (T, N)
    best = owners[mismatch.argmin(0)]
    detections = []
    for k in range(n):
        counts = np.bincount(flat[k], minlength=len(_LABEL_NAMES))
        harms = tuple(h for h, label in zip(HARMS, _MARK_LABELS) if counts[label] >= MARK_MIN_PIXELS)
        colour_counts = counts[1 : 1 + len(ATTRIBUTES)]
        attribute = ATTRIBUTES[int(colour_counts.argmax())] if colour_counts.sum() > 0 else None
        subject = SUBJECTS[int(best[k])] if on[k].sum() > 0 else None
        detections.append(Detection(subject=subject, attribute=attribute, harms=harms))
    return detections
