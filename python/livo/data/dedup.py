"""Exact and near-duplicate prompt deduplication (the Rust engine, with a typed Python front).

Prompt corpora are full of copies and light edits; duplicates waste generation time and leak
across train/validation splits. Every row gets a ``cluster_id`` — the row index of its cluster's
first occurrence — and ``keep`` marks those representatives, so downstream stages can both drop
duplicates and shard by cluster.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from livo import _native
from livo.data.io import check_writable, file_format, read_prompt_table, write_table
from livo.errors import InputError

# Inputs at least this long get a progress bar (when stderr is a terminal).
PROGRESS_MIN_ROWS = 50_000


@dataclass(frozen=True)
class DedupConfig:
    """Parameters of deduplication. ``bands`` = None derives bands × rows from ``threshold`` and
    ``num_perm`` by minimising the LSH false-positive and false-negative probabilities, weighted for
    recall when candidates are verified (:func:`lsh_params`)."""

    threshold: float = 0.8
    num_perm: int = 128
    ngram: int = 5
    bands: int | None = None
    verify: bool = True
    seed: int = 1
    threads: int | None = None


@dataclass
class DedupResult:
    """Per-row cluster assignment plus run statistics."""

    cluster_id: np.ndarray  # int64, row index of the cluster's representative
    keep: np.ndarray  # bool, True for representatives
    empty_rows: np.ndarray  # uint64, rows empty after normalisation (never merged)
    rows: int
    exact_duplicates: int
    near_duplicates: int
    clusters: int
    candidate_pairs: int
    verified_pairs: int
    bands: int
    rows_per_band: int
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The run's counts, without the per-row arrays."""
        out = {k: v for k, v in asdict(self).items() if k not in ("cluster_id", "keep", "empty_rows", "extra")}
        out["empty"] = int(len(self.empty_rows))
        out.update(self.extra)
        return out


def normalize(text: str) -> str:
    """The normalised form deduplication compares: NFKC, case-folded, punctuation and symbols
    removed by Unicode category, whitespace collapsed."""
    return _native.normalize(text)


def lsh_params(threshold: float = 0.8, num_perm: int = 128, verify: bool = True) -> tuple[int, int]:
    """(bands, rows) chosen for ``threshold`` and ``num_perm``: for recall when candidate pairs are
    verified (the default), with equal false-positive and false-negative weights when not."""
    return _native.lsh_params(threshold, num_perm, verify)


def dedup(
    texts: Sequence[str] | pa.Array | pa.ChunkedArray,
    config: DedupConfig | None = None,
    *,
    progress: bool = False,
) -> DedupResult:
    """Clusters exact and near-duplicate ``texts``.

    ``texts`` is a list of str or an Arrow string array (read in place, without copying). Null
    entries count as empty. The result does not depend on ``config.threads``.
    """
    config = config or DedupConfig()
    if isinstance(texts, pa.ChunkedArray):
        if texts.num_chunks > 1 and pa.types.is_string(texts.type):
            texts = texts.cast(pa.large_string())  # 32-bit offsets cannot join 2 GiB of text or more
        texts = texts.combine_chunks()
    elif not isinstance(texts, (list, pa.Array)):
        texts = list(texts)
    raw = _native.dedup(texts, progress=progress, **asdict(config))
    return DedupResult(**raw)


def dedup_file(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    column: str | None = None,
    config: DedupConfig | None = None,
    progress: bool | None = None,
    keep_only: bool = False,
) -> DedupResult:
    """Deduplicates a prompt file and writes every input column plus ``cluster_id`` and ``keep``
    (or only the kept rows with ``keep_only``), in the format of ``output_path``'s extension."""
    table, texts = read_prompt_table(input_path, column)
    check_writable(table.schema, output_path)  # before the work, not after it
    if texts.null_count == len(texts) and len(texts) > 0:
        raise InputError(f"{input_path}: the prompt column holds only nulls")
    if progress is None:
        progress = len(texts) >= PROGRESS_MIN_ROWS
    result = dedup(texts, config, progress=progress)
    for name in ("cluster_id", "keep"):
        if name in table.column_names:
            table = table.drop_columns([name])
    table = table.append_column("cluster_id", pa.array(result.cluster_id, pa.int64()))
    table = table.append_column("keep", pa.array(result.keep, pa.bool_()))
    if keep_only:
        table = table.filter(table.column("keep"))
    if file_format(output_path) == "txt":
        raise InputError(f"{output_path}: a .txt output cannot hold cluster_id and keep; use .jsonl, .csv or .parquet")
    write_table(table, output_path)
    return result
