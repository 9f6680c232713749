"""The write stage: kept pairs go to the shard dataset, drops to a ledger, both resumable.

Kept pairs are written through :class:`~livo.data.shards.ShardWriter` (idempotent per
``record_id``); the open shards are committed at least every ``checkpoint_seconds``, so a killed
build loses at most that much work. Dropped records are appended to ``build/drops.jsonl`` and
fsynced per batch: a rerun skips them too instead of generating them again (generation is
deterministic per record, so it would drop them again). A torn last line, from a kill in the
middle of a write, is ignored.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from livo.data.schema import PAIR_SCHEMA, pair_table
from livo.data.shards import Manifest, ShardConfig, ShardWriter
from livo.dataset.generate import BatchResult

STATE_FOLDER = "build"
LEDGER_NAME = "drops.jsonl"


def ledger_path(output: str | os.PathLike[str]) -> Path:
    return Path(output) / STATE_FOLDER / LEDGER_NAME


def read_ledger(output: str | os.PathLike[str]) -> dict[str, str]:
    """``{record_id: reason}`` of the records earlier runs dropped."""
    path = ledger_path(output)
    if not path.exists():
        return {}
    dropped = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
            dropped[entry["record_id"]] = entry["reason"]
        except (ValueError, KeyError, TypeError):
            continue  # a line torn by a kill mid-write
    return dropped


class PairSink:
    """Writes batch results; use as a context manager (commits on exit, discards open shards on error)."""

    def __init__(self, output: str | os.PathLike[str], shard_config: ShardConfig, checkpoint_seconds: float) -> None:
        self.output = Path(output)
        self.shard_config = shard_config
        self.checkpoint_seconds = checkpoint_seconds
        self.writer = ShardWriter(self.output, shard_config, schema=PAIR_SCHEMA)
        ledger = ledger_path(self.output)
        ledger.parent.mkdir(parents=True, exist_ok=True)
        self._ledger = open(ledger, "a", encoding="utf-8")
        self._last_commit = time.monotonic()
        self.written = 0

    def contains(self, record_ids: Iterable[str]) -> list[bool]:
        return self.writer.contains(record_ids)

    def accept(self, result: BatchResult) -> None:
        if result.kept:
            columns = set(PAIR_SCHEMA.names)
            rows = [{k: v for k, v in row.items() if k in columns} for row in result.kept]
            self.written += self.writer.write(pair_table(rows)).written
        if result.dropped:
            self._ledger.write(
                "".join(
                    json.dumps({"record_id": r, "value_id": v, "reason": why}) + "\n" for r, v, why in result.dropped
                )
            )
            self._ledger.flush()
            os.fsync(self._ledger.fileno())
        if time.monotonic() - self._last_commit >= self.checkpoint_seconds:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Commits the open shards and the manifest, then reopens the dataset for more rows."""
        self.writer.close()
        self.writer = ShardWriter(self.output, self.shard_config, schema=PAIR_SCHEMA)
        self._last_commit = time.monotonic()

    def close(self) -> Manifest:
        self._ledger.close()
        return self.writer.close()

    def abort(self) -> None:
        self._ledger.close()
        self.writer.abort()

    def __enter__(self) -> PairSink:
        return self

    def __exit__(self, kind: Any, error: Any, tb: Any) -> None:
        if self.writer.closed:
            return
        if kind is None:
            self.close()
        else:
            self.abort()
