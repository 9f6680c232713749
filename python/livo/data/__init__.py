"""The data engine: reading prompt files, normalisation, exact and near-duplicate deduplication, and
the sharded Parquet dataset format (write, verify, summarise, stream).

``ShardStream`` and ``ShardLoader`` (PyTorch datasets over the shards) are imported on first use, so
the light core (``pip install livo``) needs no torch for the rest.
"""

from typing import Any

from livo.data.dedup import DedupConfig, DedupResult, dedup, dedup_file, lsh_params, normalize
from livo.data.io import read_prompt_table, read_table, write_table
from livo.data.shards import (
    Manifest,
    ShardConfig,
    ShardInfo,
    ShardProblem,
    ShardWriter,
    VerifyReport,
    WriteStats,
    shard_stats,
    verify_shards,
    write_shards,
)

_STREAMING = ("ShardLoader", "ShardStream")


def __getattr__(name: str) -> Any:
    if name in _STREAMING:
        from livo.data import streaming

        return getattr(streaming, name)
    raise AttributeError(f"module 'livo.data' has no attribute {name!r}")


__all__ = [
    "DedupConfig",
    "DedupResult",
    "Manifest",
    "ShardConfig",
    "ShardInfo",
    "ShardLoader",
    "ShardProblem",
    "ShardStream",
    "ShardWriter",
    "VerifyReport",
    "WriteStats",
    "dedup",
    "dedup_file",
    "lsh_params",
    "normalize",
    "read_prompt_table",
    "read_table",
    "shard_stats",
    "verify_shards",
    "write_shards",
    "write_table",
]
