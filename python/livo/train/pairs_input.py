"""Pair batches for training: shard rows → prompts, value texts and image tensors.

A record names every value it applies (``value_texts``, ``livo.pair/2``); a ``livo.pair/1``
dataset, which has one ``value_text`` per record, reads as one value each.

Rows come from :class:`~livo.data.streaming.ShardStream` (rank/worker split, seeded shuffle,
resumable position). PNG decoding runs in the collate function, i.e. inside dataloader workers
when there are any. Images are scaled to ``[-1, 1]`` in NCHW, as diffusers' VAEs expect. With a
``resolution``, each image is first resized (shorter side) and centre-cropped to that square, as
diffusers' training scripts and Diffusion-DPO's prepare theirs: a dataset of other tools holds
images of several sizes, and a batch is one.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch

from livo.errors import InputError

COLUMNS = ("prompt", "value_texts", "aligned_image", "violating_image")
COLUMNS_VERSION_1 = ("prompt", "value_text", "aligned_image", "violating_image")


@dataclass
class PairBatch:
    """``values``: each row's first value text; ``value_lists``: each row's every value text in
    order, or ``None`` when every row has one value (``values``). ``aligned``/``violating``: float
    tensors ``(B, 3, H, W)`` in ``[-1, 1]``."""

    prompts: list[str]
    values: list[str]
    aligned: torch.Tensor
    violating: torch.Tensor
    value_lists: list[tuple[str, ...]] | None = None

    def every_value(self) -> list[tuple[str, ...]]:
        """Each row's value texts, one or several."""
        return self.value_lists if self.value_lists is not None else [(value,) for value in self.values]


def _decode(png: bytes) -> np.ndarray:
    """RGB uint8 pixels of an image file's bytes (PNG as the format says; what Pillow reads, as
    diffusers' training scripts read their images). 16-bit grayscale is scaled to 8 bits: Pillow's
    own conversion clips it, and every pixel of a 16-bit PNG became white."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        if image.mode.startswith("I;16") or image.mode == "I":  # Pillow opened 16-bit PNGs as "I" before 10
            pixels = np.asarray(image)
            if pixels.size and (pixels.min() < 0 or pixels.max() > 0xFFFF):
                raise ValueError(f"{image.mode!r} pixels beyond 16 bits")
            return np.repeat((pixels.astype(np.uint16) >> 8).astype(np.uint8)[..., None], 3, axis=2)
        if image.mode == "F":
            raise ValueError("float pixels ('F' images) are no 8- or 16-bit image")
        return np.asarray(image.convert("RGB"))


def _row_pixels(row: dict[str, Any], column: str) -> np.ndarray:
    """One image of a pair row, or an error naming the pair and the column (a bad cell was a
    traceback from deep inside Pillow, hours into a run, naming nothing)."""
    cell = row.get(column)
    if not isinstance(cell, bytes | bytearray) or not cell:
        kind = "an empty value" if cell in (b"", None) else f"a {type(cell).__name__}"
        raise InputError(f"{_named(row)}: {column} is {kind}, not image bytes (PNG)")
    try:
        return _decode(bytes(cell))
    except (OSError, ValueError, SyntaxError) as error:  # Pillow: UnidentifiedImageError, truncated data
        raise InputError(f"{_named(row)}: {column} cannot be read as an image ({error})") from None


def _row_values(row: dict[str, Any]) -> tuple[str, ...]:
    """A pair row's value texts: a list of non-empty strings (a string there was read letter by
    letter as that many values, and a null one trained as the text "None")."""
    if "value_texts" not in row:  # livo.pair/1: one value_text
        text = row.get("value_text")
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"{_named(row)}: value_text is {text!r}, not a value text")
        return (text,)
    texts = row["value_texts"]
    if isinstance(texts, str) or not isinstance(texts, list | tuple) or not texts:
        raise InputError(f"{_named(row)}: value_texts is {texts!r}; it must be a list of one or more value texts")
    if not all(isinstance(text, str) and text.strip() for text in texts):
        raise InputError(f"{_named(row)}: value_texts {texts!r} holds an empty or non-text value")
    return tuple(texts)


def _named(row: dict[str, Any]) -> str:
    prompt = row.get("prompt")
    return f"pair {prompt[:60]!r}" if isinstance(prompt, str) else "a pair"


def _as_tensor(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def fit_to_square(pixels: np.ndarray, resolution: int) -> np.ndarray:
    """``pixels`` (H, W, 3) resized so the shorter side is ``resolution`` (bilinear; the longer side
    ``int(resolution * long / short)``) and centre-cropped to ``resolution`` × ``resolution``: the
    sizes and rounding of torchvision's ``Resize(resolution)`` and ``CenterCrop(resolution)``, which
    diffusers' training scripts use."""
    from PIL import Image

    height, width = pixels.shape[:2]
    if (height, width) != (resolution, resolution):
        short, long = min(height, width), max(height, width)
        scaled_long = int(resolution * long / short)
        size = (resolution, scaled_long) if width <= height else (scaled_long, resolution)  # (width, height)
        pixels = np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR))
        height, width = pixels.shape[:2]
    top, left = round((height - resolution) / 2), round((width - resolution) / 2)
    return pixels[top : top + resolution, left : left + resolution]


def collate_pairs(rows: list[dict[str, Any]], resolution: int | None = None) -> PairBatch:
    """One micro-batch from a list of pair rows; a row that cannot be trained on is an
    :class:`InputError` naming it. ``resolution``: every image is fitted to that square
    (:func:`fit_to_square`); None: images are trained as stored, and must all be one size."""
    lists, aligned, violating = [], [], []
    for row in rows:
        if not isinstance(row.get("prompt"), str):
            raise InputError(f"{_named(row)}: prompt is {row.get('prompt')!r}, not a text")
        lists.append(_row_values(row))
        aligned.append(_row_pixels(row, "aligned_image"))
        violating.append(_row_pixels(row, "violating_image"))
        if resolution is not None:
            aligned[-1], violating[-1] = (
                fit_to_square(aligned[-1], resolution),
                fit_to_square(violating[-1], resolution),
            )
        if aligned[-1].shape != violating[-1].shape:
            raise InputError(
                f"{_named(row)}: aligned_image is {aligned[-1].shape[1]}x{aligned[-1].shape[0]} and violating_image "
                f"{violating[-1].shape[1]}x{violating[-1].shape[0]}; a pair's images must be the same size"
            )
    sizes = sorted({image.shape[:2] for image in aligned})
    if len(sizes) > 1:
        shown = ", ".join(f"{w}x{h}" for h, w in sizes)
        raise InputError(
            f"pair batch: images of different sizes ({shown}); every pair of a dataset must be one size, "
            "or set resolution to train every image resized and centre-cropped to one square"
        )
    return PairBatch(
        prompts=[r["prompt"] for r in rows],
        values=[texts[0] for texts in lists],
        aligned=_as_tensor(aligned),
        violating=_as_tensor(violating),
        value_lists=lists if any(len(texts) > 1 for texts in lists) else None,
    )


def pair_loader(
    dataset: str,
    split: str,
    micro_batch: int,
    *,
    seed: int,
    shuffle_buffer: int,
    num_workers: int,
    rank: int,
    world_size: int,
    resolution: int | None = None,
) -> Any:
    """A resumable :class:`~livo.data.streaming.ShardLoader` of :class:`PairBatch` for one rank
    (``resolution``: see :func:`collate_pairs`)."""
    from livo.data.schema import PAIR_SCHEMA_VERSION_1
    from livo.data.shards import Manifest
    from livo.data.streaming import ShardStream

    version_1 = Manifest.load(dataset).schema_version == PAIR_SCHEMA_VERSION_1
    stream = ShardStream(
        dataset,
        split,
        columns=list(COLUMNS_VERSION_1 if version_1 else COLUMNS),
        batch_size=micro_batch,
        drop_last=True,
        shuffle=True,
        shuffle_buffer=shuffle_buffer,
        seed=seed,
        rank=rank,
        world_size=world_size,
    )
    return stream.loader(num_workers=num_workers, collate_fn=partial(collate_pairs, resolution=resolution))


def endless(loader: Any, rank: int) -> Iterator[PairBatch]:
    """Batches epoch after epoch (the loader advances its own epoch); fails when an epoch gives
    this rank nothing, e.g. fewer row groups than ranks × workers or fewer rows than a batch."""
    empty = 0  # a resumed position may sit at the very end of an epoch: one empty pass is fine
    while True:
        delivered = 0
        for batch in loader:
            delivered += 1
            yield batch
        empty = empty + 1 if delivered == 0 else 0
        if empty == 2:
            raise InputError(
                f"dataset {loader.stream.directory}: rank {rank} got no full micro-batch in an epoch "
                f"(row groups are dealt to ranks x workers; lower micro_batch_size or write smaller row groups)"
            )


def dataset_image_size(dataset: str, split: str, resolution: int | None = None) -> tuple[int, int]:
    """``(height, width)`` every pair is trained at: ``resolution`` squared when given, else the
    first aligned image's of ``split``."""
    import pyarrow.parquet as pq

    if resolution is not None:
        return resolution, resolution
    from livo.data.shards import Manifest

    manifest = Manifest.load(dataset)
    for shard in manifest.shards_of(split):
        for group, rows in enumerate(shard.row_groups):
            if rows:
                cell = pq.ParquetFile(manifest.directory / shard.name).read_row_group(group, columns=["aligned_image"])
                height, width = _decode(cell.column(0)[0].as_py()).shape[:2]
                return height, width
    raise InputError(f"dataset {dataset}: split {split!r} has no rows")
