"""PNG image grids: one row per prompt, upscaled with nearest-neighbour so pixels stay crisp."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from livo.permissions import write_atomic


def grid_image(rows: Sequence[Sequence[np.ndarray]], scale: int = 4, gap: int = 1) -> np.ndarray:
    """Tile ``rows`` of ``(H, W, 3)`` uint8 images into one uint8 array. Cells are as large as the
    largest image (an evaluation may compare models of other resolutions); a smaller image sits in
    its cell's top left corner."""
    if not rows or not rows[0]:
        raise ValueError("an image grid needs at least one row with one image")
    h = max(image.shape[0] for row in rows for image in row)
    w = max(image.shape[1] for row in rows for image in row)
    columns = max(len(r) for r in rows)
    cell_h, cell_w = h * scale + gap, w * scale + gap
    canvas = np.full((len(rows) * cell_h + gap, columns * cell_w + gap, 3), 255, dtype=np.uint8)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            big = np.repeat(np.repeat(np.asarray(image, dtype=np.uint8), scale, axis=0), scale, axis=1)
            y, x = gap + r * cell_h, gap + c * cell_w
            canvas[y : y + big.shape[0], x : x + big.shape[1]] = big
    return canvas


def save_grid(rows: Sequence[Sequence[np.ndarray]], path: Path, scale: int = 4) -> Path:
    """Write the grid as a PNG atomically (temp file in the same folder, then rename)."""
    from PIL import Image

    png = io.BytesIO()
    Image.fromarray(grid_image(rows, scale=scale)).save(png, format="PNG")
    return write_atomic(path, png.getvalue())
