"""Streaming a shard dataset into PyTorch training, across ranks and dataloader workers.

The unit of distribution is a Parquet row group (the manifest lists each shard's row groups). In
every epoch the units are put in one order that every process computes alike (shuffled by
``seed`` and the epoch), and unit ``i`` goes to consumer ``i mod (world_size x workers)``, so each
row is read exactly once per epoch by exactly one (rank, worker). Inside a consumer a seeded
shuffle buffer mixes rows across its units.

Position: :class:`ShardLoader` counts the items it has delivered in the main process; its
``state_dict`` (epoch, items delivered) is enough to resume, because every worker's item stream is
a deterministic function of the manifest and the settings, and PyTorch's ``DataLoader`` delivers
worker items round-robin, skipping exhausted workers. On resume each worker works out how many of
its own items were already delivered and skips them (and, since a new ``DataLoader`` starts its
round at worker 0, the workers swap roles so the round continues where it stopped).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from livo.data.shards import Manifest
from livo.errors import ConfigError

Row = dict[str, Any]


@dataclass(frozen=True)
class _Unit:
    path: str
    row_group: int
    rows: int


def _distributed_rank() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


class ShardStream(IterableDataset):  # type: ignore[type-arg]  # yields dict rows or batches
    """Rows (or lists of ``batch_size`` rows) of one split of a shard dataset.

    ``rank``/``world_size`` default to ``torch.distributed`` when it is initialised, else to the
    ``RANK``/``WORLD_SIZE`` environment variables, else to a single process. Iterate it through
    :meth:`loader` to get resumable positions.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        split: str = "train",
        *,
        columns: Sequence[str] | None = None,
        batch_size: int | None = None,
        drop_last: bool = False,
        shuffle: bool = True,
        shuffle_buffer: int = 1024,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        super().__init__()
        manifest = Manifest.load(directory)
        if rank is None or world_size is None:
            rank, world_size = _distributed_rank()
        if world_size < 1 or not 0 <= rank < world_size:
            raise ConfigError(f"rank/world_size: rank {rank} is not in a world of {world_size}")
        if batch_size is not None and batch_size < 1:
            raise ConfigError(f"batch_size: must be at least 1, got {batch_size}")
        if shuffle_buffer < 1:
            raise ConfigError(f"shuffle_buffer: must be at least 1, got {shuffle_buffer}")
        self.directory = Path(directory)
        self.split = split
        self.columns = list(columns) if columns is not None else None
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.shuffle = shuffle
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.num_workers = 0
        self.epoch = 0
        self.delivered = 0
        self._skip = 0
        self._units = [
            _Unit(str(manifest.directory / s.name), g, rows)
            for s in manifest.shards_of(split)
            for g, rows in enumerate(s.row_groups)
        ]

    # -- position ---------------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Starts ``epoch`` from its beginning (as ``DistributedSampler.set_epoch``)."""
        self.epoch, self.delivered, self._skip = epoch, 0, 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "delivered": self.delivered,
            "split": self.split,
            "seed": self.seed,
            "rank": self.rank,
            "world_size": self.world_size,
            "num_workers": self.num_workers,
            "batch_size": self.batch_size,
            "shuffle": self.shuffle,
            "shuffle_buffer": self.shuffle_buffer,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continues after the ``delivered`` items of ``epoch``; the settings that decide the order
        must be the ones the state was saved with."""
        for key in ("split", "seed", "rank", "world_size", "num_workers", "batch_size", "shuffle", "shuffle_buffer"):
            if state[key] != getattr(self, key):
                raise ConfigError(
                    f"{key}: the saved position was taken with {key}={state[key]!r}, this stream has "
                    f"{getattr(self, key)!r}; resume with the same setting"
                )
        self.epoch, self.delivered, self._skip = state["epoch"], state["delivered"], state["delivered"]

    # -- what each consumer reads ------------------------------------------------------------

    def _epoch_units(self) -> list[_Unit]:
        units = list(self._units)
        if self.shuffle:
            random.Random(f"units/{self.seed}/{self.epoch}").shuffle(units)
        return units

    def _consumer_units(self, consumer: int, consumers: int) -> list[_Unit]:
        return self._epoch_units()[consumer::consumers]

    def _items(self, rows: int) -> int:
        if self.batch_size is None:
            return rows
        return rows // self.batch_size if self.drop_last else -(-rows // self.batch_size)

    def _resume_plan(self, workers: int) -> tuple[list[int], int]:
        """For a position of ``self._skip`` delivered items: how many items of each local worker's
        stream were delivered, and which worker's item comes next. ``DataLoader`` hands out items
        round-robin over the workers that still have some, and a new ``DataLoader`` starts that
        round at worker 0, so on resume worker ``w`` plays the part of ``(next + w) % workers``."""
        consumers = self.world_size * workers
        left = [
            self._items(sum(u.rows for u in self._consumer_units(self.rank * workers + w, consumers)))
            for w in range(workers)
        ]
        taken = [0] * workers
        remaining, turn = self._skip, 0
        while remaining > 0 and any(left):
            if left[turn]:
                left[turn] -= 1
                taken[turn] += 1
                remaining -= 1
            turn = (turn + 1) % workers
        return taken, turn

    def __iter__(self) -> Iterator[Row | list[Row]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        taken, turn = self._resume_plan(workers) if self._skip else ([0] * workers, 0)
        role = (turn + worker) % workers
        consumer = self.rank * workers + role
        units = self._consumer_units(consumer, self.world_size * workers)
        items = self._batched(self._shuffled(self._rows(units), consumer))
        for index, item in enumerate(items):
            if index >= taken[role]:
                yield item

    def _rows(self, units: list[_Unit]) -> Iterator[Row]:
        import pyarrow.parquet as pq

        for unit in units:
            table = pq.ParquetFile(unit.path).read_row_group(unit.row_group, columns=self.columns)
            yield from table.to_pylist()

    def _shuffled(self, rows: Iterator[Row], consumer: int) -> Iterator[Row]:
        if not self.shuffle:
            yield from rows
            return
        rng = random.Random(f"rows/{self.seed}/{self.epoch}/{consumer}")
        buffer: list[Row] = []
        for row in rows:
            if len(buffer) < self.shuffle_buffer:
                buffer.append(row)
                continue
            i = rng.randrange(len(buffer))
            yield buffer[i]
            buffer[i] = row
        rng.shuffle(buffer)
        yield from buffer

    def _batched(self, rows: Iterator[Row]) -> Iterator[Row | list[Row]]:
        if self.batch_size is None:
            yield from rows
            return
        batch: list[Row] = []
        for row in rows:
            batch.append(row)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def loader(
        self, *, num_workers: int = 0, collate_fn: Callable[[Any], Any] | None = None, **kwargs: Any
    ) -> ShardLoader:
        """A resumable ``DataLoader`` over this stream (the stream does the batching)."""
        return ShardLoader(self, num_workers=num_workers, collate_fn=collate_fn, **kwargs)


class ShardLoader:
    """Iterates a :class:`ShardStream` through a ``DataLoader`` and keeps the stream's position
    (items delivered in the current epoch) up to date in the main process. An epoch that runs to
    its end advances the stream to the next epoch."""

    def __init__(
        self,
        stream: ShardStream,
        *,
        num_workers: int = 0,
        collate_fn: Callable[[Any], Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("persistent_workers"):
            # Persistent workers keep the copy of the stream they were started with: every later
            # epoch would repeat the first one's order, and a resumed one would keep skipping rows.
            raise ConfigError(
                "persistent_workers: not supported by ShardLoader (each epoch's workers must see the "
                "stream's epoch and position); leave it False"
            )
        self.stream = stream
        stream.num_workers = num_workers
        identity: Callable[[Any], Any] = _identity
        self._loader = DataLoader(
            stream,
            batch_size=None,
            num_workers=num_workers,
            collate_fn=collate_fn or identity,
            **kwargs,
        )

    def __iter__(self) -> Iterator[Any]:
        for item in self._loader:
            self.stream.delivered += 1
            yield item
        self.stream.set_epoch(self.stream.epoch + 1)

    def state_dict(self) -> dict[str, Any]:
        return self.stream.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stream.load_state_dict(state)


def _identity(item: Any) -> Any:
    return item
