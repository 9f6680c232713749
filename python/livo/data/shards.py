"""Sharded Parquet datasets: writing, the manifest, verification and statistics.

The engine (Rust, ``livo._native``) assigns every row to a split by an XXH3 hash of its group key
(by default the dedup ``cluster_id``, so near-duplicates never straddle train and validation),
rolls zstd Parquet shards at a target size, makes each shard visible only once it is complete and
synced, and rewrites ``manifest.json`` atomically after every shard. Writing is idempotent per
``record_id``: a writer that was killed and restarted with the same input adds exactly the rows that
were not committed. The format is described in ``docs/dataset-format.md``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import pyarrow as pa

from livo import _native
from livo.data.schema import PAIR_SCHEMA_VERSION, conform_to_schema
from livo.data.shard_limits import MAX_BUCKETS, MAX_ROW_GROUP_BYTES, MAX_TARGET_SHARD_BYTES, MAX_ZSTD_LEVEL
from livo.errors import ConfigError, InputError
from livo.json_fields import JsonFields

MANIFEST_NAME = "manifest.json"
# The writer's lock file (flock), the name the engine uses.
LOCK_NAME = ".livo-shards.lock"
MIB = 1 << 20
MANIFEST_FORMAT = "livo-shards"
MANIFEST_FORMAT_VERSION = 1

ManifestError = _native.ManifestError
SchemaMismatchError = _native.SchemaMismatchError
DatasetLockedError = _native.DatasetLockedError
ParquetFileError = _native.ParquetFileError


@dataclass(frozen=True)
class ShardConfig:
    """How a dataset is split and written. ``splits``, ``group_key``, ``record_id``, ``buckets``,
    ``zstd_level`` and ``schema_version`` are fixed by the first writer; resuming or appending with
    other values is refused, because it would move rows between splits."""

    splits: Mapping[str, float] = field(default_factory=lambda: {"train": 0.98, "val": 0.02})
    group_key: str = "cluster_id"
    record_id: str = "record_id"
    buckets: int = 1
    target_shard_bytes: int = 256 * MIB
    row_group_bytes: int = 32 * MIB
    zstd_level: int = 3
    schema_version: str = PAIR_SCHEMA_VERSION
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.splits:
            raise ConfigError("splits: at least one split is needed")
        total = sum(self.splits.values())
        if any(r <= 0 for r in self.splits.values()) or abs(total - 1.0) > 1e-6:
            raise ConfigError(f"splits: ratios must be positive and sum to 1, got {dict(self.splits)}")
        if not 1 <= self.buckets <= MAX_BUCKETS:
            raise ConfigError(f"buckets: must be 1-{MAX_BUCKETS}, got {self.buckets}")
        if not 0 < self.target_shard_bytes <= MAX_TARGET_SHARD_BYTES:
            raise ConfigError(
                f"target_shard_bytes: must be positive and at most {MAX_TARGET_SHARD_BYTES}, "
                f"got {self.target_shard_bytes}"
            )
        if not 0 < self.row_group_bytes <= MAX_ROW_GROUP_BYTES:
            raise ConfigError(
                f"row_group_bytes: must be positive and at most {MAX_ROW_GROUP_BYTES}, got {self.row_group_bytes}"
            )
        if not 1 <= self.zstd_level <= MAX_ZSTD_LEVEL:
            raise ConfigError(f"zstd_level: must be 1-{MAX_ZSTD_LEVEL}, got {self.zstd_level}")


@dataclass(frozen=True)
class WriteStats:
    rows: int
    written: int
    skipped: int


@dataclass(frozen=True)
class ShardInfo:
    name: str
    split: str
    bucket: int
    rows: int
    bytes: int
    blake3: str
    schema: str
    row_groups: tuple[int, ...]


@dataclass(frozen=True)
class Manifest:
    """The parsed ``manifest.json`` of a dataset directory."""

    directory: Path
    schema_version: str
    record_id: str
    group_key: str
    splits: dict[str, float]
    metadata: dict[str, Any]
    schemas: dict[str, list[dict[str, Any]]]
    shards: tuple[ShardInfo, ...]

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Manifest:
        """Reads and checks ``DIR/manifest.json``: every field a reader relies on is validated here,
        so a damaged manifest is one error naming the file and the field, in every command, rather
        than a ``TypeError`` wherever the field is first used."""
        directory = Path(directory)
        path = directory / MANIFEST_NAME
        if not directory.exists():
            raise FileNotFoundError(f"{directory}: no such folder; a shard dataset is a folder with a {MANIFEST_NAME}")
        if not directory.is_dir():
            raise NotADirectoryError(f"{directory}: a file; a shard dataset is a folder with a {MANIFEST_NAME}")
        if not path.exists():
            raise FileNotFoundError(f"{path}: no manifest; is {directory} a shard dataset?")
        try:
            raw = json.loads(path.read_bytes())
        except ValueError as error:
            raise InputError(f"{path}: not a valid shard manifest: {error}") from error
        return _parse_manifest(directory, JsonFields(path, raw, what="not a valid shard manifest"))

    def shards_of(self, split: str | None = None) -> list[ShardInfo]:
        if split is not None and split not in self.splits:
            raise InputError(f"{self.directory}: no split {split!r} (splits: {', '.join(self.splits)})")
        return [s for s in self.shards if split is None or s.split == split]

    def files(self, split: str | None = None) -> list[str]:
        """Paths of the shards of one split (or all), in manifest order."""
        return [str(self.directory / s.name) for s in self.shards_of(split)]

    def data_files(self) -> dict[str, list[str]]:
        """``{split: [paths]}`` for ``datasets.load_dataset("parquet", data_files=...)``; splits
        without rows are left out (``datasets`` rejects empty file lists)."""
        return {split: self.files(split) for split in self.splits if self.files(split)}

    def rows(self, split: str | None = None) -> int:
        return sum(s.rows for s in self.shards_of(split))


def _parse_manifest(directory: Path, top: JsonFields) -> Manifest:
    if top.text("format") != MANIFEST_FORMAT:
        raise top.fail("format", f"must be {MANIFEST_FORMAT!r}, got {top.raw['format']!r}")
    version = top.count("format_version", 1)
    if version > MANIFEST_FORMAT_VERSION:
        raise top.fail(
            "format_version", f"is {version}; this LiVO reads version {MANIFEST_FORMAT_VERSION} (upgrade it)"
        )
    for name in ("split_hash", "compression", "content_hash"):
        top.text(name)
    top.count("buckets", 1)
    splits: dict[str, float] = {}
    for split in top.each("splits"):
        splits[split.text("name")] = split.ratio("ratio")
    if not splits:
        raise top.fail("splits", "lists no split")
    schemas = top.object("schemas")
    for fingerprint in schemas.raw:
        for column in schemas.each(fingerprint):
            column.text("name")
            column.text("type")
    return Manifest(
        directory=directory,
        schema_version=top.text("schema_version"),
        record_id=top.text("record_id_column"),
        group_key=top.text("group_key_column"),
        splits=splits,
        metadata=top.mapping("metadata"),
        schemas=schemas.raw,
        shards=tuple(_parse_shard(entry, splits, schemas.raw) for entry in top.each("shards")),
    )


def _parse_shard(entry: JsonFields, splits: Mapping[str, float], schemas: Mapping[str, Any]) -> ShardInfo:
    name = entry.text("name")
    if Path(name).name != name or not name.endswith(".parquet"):
        raise entry.fail("name", f"must be a .parquet file name inside the dataset folder, got {name!r}")
    split = entry.text("split")
    if split not in splits:
        raise entry.fail("split", f"names {split!r}, which is not one of the splits {list(splits)}")
    schema = entry.text("schema")
    if schema not in schemas:
        raise entry.fail("schema", f"names {schema!r}, which is not in 'schemas'")
    rows, row_groups = entry.count("rows"), entry.counts("row_groups")
    if sum(row_groups) != rows:
        raise entry.fail("row_groups", f"adds up to {sum(row_groups)} rows, but 'rows' is {rows}")
    return ShardInfo(
        name=name,
        split=split,
        bucket=entry.count("bucket"),
        rows=rows,
        bytes=entry.count("bytes"),
        blake3=entry.text("blake3"),
        schema=schema,
        row_groups=row_groups,
    )


def check_dataset_output(directory: str | os.PathLike[str], *, flag: str, append: bool) -> int:
    """Checks a command's dataset output before any work and returns the rows it holds already.

    Adding to a dataset that holds rows is explicit (``append``, the commands' ``--append``): typing
    an existing path again must not quietly grow last week's dataset. A folder with an empty
    dataset (no shard yet) is written as new.
    """
    from livo.user_paths import output_folder

    path = output_folder(directory, flag=flag, overwrite=False, resumable=True)
    if not path.is_dir():
        return 0
    if not (path / MANIFEST_NAME).exists():
        leftovers = [p.name for p in path.iterdir() if p.name != LOCK_NAME]
        if leftovers:
            raise InputError(
                f"{flag} {directory}: exists, is not empty and holds no shard dataset (no {MANIFEST_NAME}); "
                "choose a new or empty folder"
            )
        return 0
    rows = Manifest.load(path).rows()
    if rows and not append:
        raise InputError(
            f"{flag} {directory}: holds a dataset of {rows:,} rows; pass --append to add to it "
            "(rows whose record id it holds are skipped), or choose a new folder"
        )
    return rows


class ShardWriter:
    """Writes Arrow data (pyarrow tables, batches, readers, polars frames) into a shard dataset.

    Use it as a context manager: leaving the block normally commits the open shards and the
    manifest; leaving it by an exception discards the open shards, so their rows count as not
    written and a restarted writer writes them. ``schema`` (e.g. ``PAIR_SCHEMA``) makes every
    write select and cast to it, so producers using polars or pyarrow give the same files.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        config: ShardConfig | None = None,
        *,
        schema: pa.Schema | None = None,
    ) -> None:
        config = config or ShardConfig()
        self.directory = Path(directory)
        self.config = config
        self.schema = schema
        try:
            self._metadata_json = json.dumps(dict(config.metadata), sort_keys=True)
        except TypeError as error:
            raise ConfigError(f"metadata: must be JSON-serialisable: {error}") from error
        # A new dataset whose writing fails before a shard is committed loses its folder, lock and
        # manifest again: an empty manifest left behind would look like a valid empty dataset, and
        # nothing may make a corrected retry refuse the folder (other splits, another schema); the
        # engine also lets a writer with other settings take over a dataset that holds no shard (one
        # left by a crash before its first commit).
        self._fresh = not (self.directory / MANIFEST_NAME).exists()
        self._created_directory = not self.directory.exists()
        self._discarded = False
        self._native: Any = self._open()

    def _open(self) -> Any:
        config = self.config
        return _native.ShardWriter(
            str(self.directory),
            splits=list(config.splits.items()),
            group_key=config.group_key,
            record_id=config.record_id,
            buckets=config.buckets,
            target_shard_bytes=config.target_shard_bytes,
            row_group_bytes=config.row_group_bytes,
            zstd_level=config.zstd_level,
            schema_version=config.schema_version,
            metadata_json=self._metadata_json,
        )

    def write(self, data: Any) -> WriteStats:
        """Writes the rows whose record ids the dataset does not hold yet. A failed write ends the
        writer (the engine refuses further writes); a new dataset is then discarded unless a shard
        was committed."""
        try:
            rows, written, skipped = self._native.write(self._arrow(data))
        except BaseException:
            if self._fresh:
                self._discard_new_dataset()
            raise
        return WriteStats(rows=rows, written=written, skipped=skipped)

    def contains(self, record_ids: Iterable[str]) -> list[bool]:
        """Whether each id is already in the dataset: lets a producer skip expensive work."""
        return self._native.contains([str(i) for i in record_ids])

    def close(self) -> Manifest:
        """Commits the open shards and the manifest (an empty dataset when nothing was written)."""
        if self._discarded:
            raise InputError(f"{self.directory}: the writer was discarded after a write into the new dataset failed")
        self._native.finish()
        return Manifest.load(self.directory)

    def abort(self) -> None:
        """Discards the open shards; committed shards stay, and so do shards that filled earlier
        (their commit may still be finishing, and the call waits for it)."""
        self._native.abort()

    @property
    def closed(self) -> bool:
        return self._discarded or bool(self._native.closed)

    def _discard_new_dataset(self) -> None:
        """Removes what opening a new dataset created, once writing into it has failed; a dataset
        with a committed shard is kept, since a rerun with the same input resumes it."""
        self._native.abort()
        self._discarded = True
        try:
            if Manifest.load(self.directory).shards:
                return  # a shard was committed after all: it is data, keep the dataset
        except (OSError, ValueError):
            return
        for name in (MANIFEST_NAME, LOCK_NAME):
            (self.directory / name).unlink(missing_ok=True)
        if self._created_directory:
            try:
                self.directory.rmdir()
            except OSError:
                pass  # not empty: something else was put there meanwhile

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if self.closed:
            return
        if kind is None:
            self.close()
        elif self._fresh:
            self._discard_new_dataset()  # leave no dataset behind unless a shard was committed
        else:
            self.abort()

    def _arrow(self, data: Any) -> Any:
        if type(data).__module__.startswith("polars"):
            data = data.to_arrow()
        if self.schema is not None:
            table = data if isinstance(data, pa.Table) else pa.table(data)
            return conform_to_schema(table, self.schema, "data for the dataset schema")
        if isinstance(data, pa.Table | pa.RecordBatch):
            return _without_views(data)
        if hasattr(data, "__arrow_c_stream__") or hasattr(data, "__arrow_c_array__"):
            return data
        raise InputError(
            f"cannot write {type(data).__name__}: expected a pyarrow Table/RecordBatch/"
            "RecordBatchReader, a polars DataFrame or an Arrow PyCapsule object"
        )


def write_shards(
    directory: str | os.PathLike[str],
    data: Any | Iterable[Any],
    config: ShardConfig | None = None,
    *,
    schema: pa.Schema | None = None,
) -> Manifest:
    """Writes one table (or an iterable of tables/batches) and commits it; resumable by rerunning."""
    with ShardWriter(directory, config, schema=schema) as writer:
        is_arrow = hasattr(data, "__arrow_c_stream__") or hasattr(data, "__arrow_c_array__")
        for part in [data] if is_arrow or type(data).__module__.startswith("polars") else data:
            writer.write(part)
    return Manifest.load(directory)


def _without_views(data: pa.Table | pa.RecordBatch) -> pa.Table | pa.RecordBatch:
    """View types (polars' default) become plain string/binary, which every reader understands."""
    plain = {pa.types.is_string_view: pa.string(), pa.types.is_binary_view: pa.binary()}
    fields = []
    for f in data.schema:
        target = next((t for test, t in plain.items() if test(f.type)), None)
        fields.append(f.with_type(target) if target is not None else f)
    schema = pa.schema(fields)
    return data if schema == data.schema else data.cast(schema)


@dataclass(frozen=True)
class ShardProblem:
    shard: str
    kind: str  # missing | extra | truncated | corrupt | incomplete
    detail: str


@dataclass(frozen=True)
class VerifyReport:
    shards: int
    rows: int
    bytes: int
    problems: tuple[ShardProblem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_shards(directory: str | os.PathLike[str], *, progress: bool = False) -> VerifyReport:
    """Recomputes every shard's BLAKE3 hash, size and row count and compares them with the
    manifest; also reports unlisted ``.parquet`` files and leftover partial files."""
    Manifest.load(directory)  # a damaged manifest is reported as by every other command
    raw = _native.verify_shards(str(directory), progress=progress)
    problems = tuple(ShardProblem(*p) for p in raw["problems"])
    return VerifyReport(shards=raw["shards"], rows=raw["rows"], bytes=raw["bytes"], problems=problems)


def shard_stats(directory: str | os.PathLike[str], by: Iterable[str] | None = None) -> Any:
    """Row counts per split and per value of the ``by`` columns, as a polars DataFrame (reads only
    those columns). By default the columns are ``value_id`` and ``category`` where the dataset has
    them; columns named explicitly must exist."""
    import polars as pl

    manifest = Manifest.load(directory)
    fields = {f["name"] for fields in manifest.schemas.values() for f in fields}
    if by is None:
        keys = [c for c in ("value_id", "category") if c in fields]
    else:
        keys = list(by)
        missing = [c for c in keys if c not in fields]
        if missing and manifest.shards:
            raise InputError(
                f"{directory}: no column {missing} to count by; the dataset's columns are {sorted(fields)}"
            )
    if not manifest.shards:
        return pl.DataFrame({"split": [], "rows": []}, schema={"split": pl.String, "rows": pl.UInt32})
    if not keys:
        splits = list(manifest.splits)
        return pl.DataFrame({"split": splits, "rows": [manifest.rows(s) for s in splits]})
    counts = [_count_shard(manifest, shard, keys) for shard in manifest.shards]
    return (
        pl.concat(counts, how="vertical_relaxed")
        .group_by(["split", *keys])
        .agg(pl.col("rows").sum())
        .sort(["split", *keys])
    )


def _count_shard(manifest: Manifest, shard: ShardInfo, keys: list[str]) -> Any:
    """Rows per value of ``keys`` in one shard. Each shard is read on its own, after a check of its
    size against the manifest, so a damaged one is named rather than failing the whole scan with a
    reader's error that names no file."""
    import polars as pl

    from livo.data.io import named_read_errors

    path = manifest.directory / shard.name
    verify = f"`livo shards verify {manifest.directory}` lists every damaged shard"
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InputError(f"{path}: listed in {MANIFEST_NAME} but missing; {verify}") from None
    if size != shard.bytes:
        raise InputError(
            f"{path}: {size:,} bytes, {MANIFEST_NAME} records {shard.bytes:,} (truncated or altered); {verify}"
        )
    with named_read_errors(path, f"a Parquet shard ({verify})"):
        frame = pl.read_parquet(path, columns=keys)
    return frame.group_by(keys).agg(pl.len().cast(pl.UInt32).alias("rows")).with_columns(split=pl.lit(shard.split))
