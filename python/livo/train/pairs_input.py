"""Pair batches for training: shard rows → prompts, value texts and image tensors.

A record names every value it applies (``value_texts``, ``livo.pair/2``); a ``livo.pair/1``
dataset, which has one ``value_text`` per record, reads as one value each.

Rows come from :class:`~livo.data.streaming.ShardStream` (rank/worker split, seeded shuffle,
resumable position). PNG decoding runs in the collate function, i.e. inside dataloader workers
when there are any. Images are scaled to ``[-1, 1]`` in NCHW, as diffusers' VAEs expect.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
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
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB"))


def _pixels(images: list[bytes]) -> torch.Tensor:
    array = np.stack([_decode(p) for p in images])
    return torch.from_numpy(array).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def collate_pairs(rows: list[dict[str, Any]]) -> PairBatch:
    """One micro-batch from a list of pair rows."""
    lists = [tuple(r["value_texts"]) if "value_texts" in r else (r["value_text"],) for r in rows]
    try:
        return PairBatch(
            prompts=[r["prompt"] for r in rows],
            values=[texts[0] for texts in lists],
            aligned=_pixels([r["aligned_image"] for r in rows]),
            violating=_pixels([r["violating_image"] for r in rows]),
            value_lists=lists if any(len(texts) > 1 for texts in lists) else None,
        )
    except ValueError as error:
        raise InputError(f"pair batch: images of different sizes cannot be stacked: {error}") from error


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
) -> Any:
    """A resumable :class:`~livo.data.streaming.ShardLoader` of :class:`PairBatch` for one rank."""
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
    return stream.loader(num_workers=num_workers, collate_fn=collate_pairs)


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


def dataset_image_size(dataset: str, split: str) -> tuple[int, int]:
    """``(height, width)`` of the first aligned image of ``split``: the size every pair is trained at."""
    import pyarrow.parquet as pq

    from livo.data.shards import Manifest

    manifest = Manifest.load(dataset)
    for shard in manifest.shards_of(split):
        for group, rows in enumerate(shard.row_groups):
            if rows:
                cell = pq.ParquetFile(manifest.directory / shard.name).read_row_group(group, columns=["aligned_image"])
                height, width = _decode(cell.column(0)[0].as_py()).shape[:2]
                return height, width
    raise InputError(f"dataset {dataset}: split {split!r} has no rows")
