"""ShardStream: every row once per epoch across ranks and workers, seeded shuffles, exact resume."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest

from livo.data.shards import ShardConfig, write_shards
from livo.data.streaming import ShardStream
from livo.errors import ConfigError

ROWS = 300


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("stream")
    table = pa.table(
        {
            "record_id": [f"r{i:04d}" for i in range(ROWS)],
            "cluster_id": pa.array(range(ROWS), pa.int64()),
            "payload": [bytes([i % 251]) * 64 for i in range(ROWS)],
        }
    )
    config = ShardConfig(splits={"train": 1.0}, target_shard_bytes=3 << 10, row_group_bytes=1 << 10, zstd_level=1)
    manifest = write_shards(directory, table.to_batches(max_chunksize=25), config)
    assert sum(len(s.row_groups) for s in manifest.shards) >= 12
    return directory


def ids(items: list) -> list[str]:
    rows = [row for item in items for row in (item if isinstance(item, list) else [item])]
    return [row["record_id"] for row in rows]


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
@pytest.mark.parametrize("num_workers", [0, 1, 2])
def test_every_rank_and_worker_combination_reads_each_row_exactly_once(
    dataset: Path, world_size: int, num_workers: int
) -> None:
    seen: Counter[str] = Counter()
    for rank in range(world_size):
        stream = ShardStream(
            dataset, columns=["record_id"], shuffle_buffer=16, seed=3, rank=rank, world_size=world_size
        )
        seen.update(ids(list(stream.loader(num_workers=num_workers))))
    assert seen == Counter(f"r{i:04d}" for i in range(ROWS))


def test_the_shuffle_is_seeded_and_changes_with_the_epoch(dataset: Path) -> None:
    def order(seed: int, epoch: int) -> list[str]:
        stream = ShardStream(dataset, columns=["record_id"], seed=seed, shuffle_buffer=32)
        stream.set_epoch(epoch)
        return ids(list(stream))

    assert order(1, 0) == order(1, 0)
    assert order(1, 0) != order(1, 1)
    assert order(1, 0) != order(2, 0)
    assert sorted(order(1, 1)) == sorted(order(2, 0))


def test_an_unshuffled_stream_reads_rows_in_file_order(dataset: Path) -> None:
    stream = ShardStream(dataset, columns=["record_id"], shuffle=False)
    assert ids(list(stream)) == [f"r{i:04d}" for i in range(ROWS)]


@pytest.mark.parametrize(("num_workers", "stop"), [(0, 9), (2, 9), (2, 20)])
def test_a_resumed_loader_continues_exactly_where_it_stopped(dataset: Path, num_workers: int, stop: int) -> None:
    def stream() -> ShardStream:
        return ShardStream(
            dataset, columns=["record_id"], batch_size=7, seed=5, shuffle_buffer=20, rank=1, world_size=2
        )

    uninterrupted = ids(list(stream().loader(num_workers=num_workers)))
    first = stream().loader(num_workers=num_workers)
    taken = []
    for batch in first:
        taken.append(batch)
        if len(taken) == stop:
            break
    state = first.state_dict()
    assert state["delivered"] == stop
    resumed = stream().loader(num_workers=num_workers)
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert ids(taken) + ids(rest) == uninterrupted
    assert resumed.state_dict()["epoch"] == 1 and resumed.state_dict()["delivered"] == 0


def test_a_position_saved_with_other_workers_is_refused(dataset: Path) -> None:
    saved = ShardStream(dataset).loader(num_workers=2).state_dict()
    with pytest.raises(ConfigError, match="num_workers"):
        ShardStream(dataset).loader(num_workers=1).load_state_dict(saved)


def test_persistent_workers_are_refused(dataset: Path) -> None:
    """They keep the stream as it was when they started: every epoch repeated the first one's
    order, and after a resume each later epoch lost the rows skipped in the resumed one."""
    with pytest.raises(ConfigError, match="persistent_workers: not supported by ShardLoader"):
        ShardStream(dataset).loader(num_workers=2, persistent_workers=True)


def test_batches_hold_batch_size_rows_and_drop_last_drops_the_short_one(dataset: Path) -> None:
    kept = list(ShardStream(dataset, batch_size=64, shuffle=False))
    dropped = list(ShardStream(dataset, batch_size=64, shuffle=False, drop_last=True))
    assert [len(b) for b in kept] == [64] * 4 + [ROWS - 256]
    assert [len(b) for b in dropped] == [64] * 4
