"""``livo shards write|verify|stats``: build, check and summarise a sharded Parquet dataset."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from livo.arg_types import byte_size_at_most, int_at_least
from livo.data.shard_limits import MAX_BUCKETS, MAX_ROW_GROUP_BYTES, MAX_TARGET_SHARD_BYTES, MAX_ZSTD_LEVEL
from livo.errors import ConfigError, InputError

if TYPE_CHECKING:
    from livo.data.shards import ShardWriter, WriteStats

# Repeated record ids shown in an error; the message gives the total count.
SHOWN_IDS = 3


def parse_splits(items: list[str] | None) -> dict[str, float]:
    if not items:
        return {"train": 0.98, "val": 0.02}
    splits: dict[str, float] = {}
    for item in items:
        name, _, ratio = item.partition("=")
        if name in splits:
            raise ConfigError(f"--split {item!r}: split {name!r} is given twice")
        try:
            splits[name] = float(ratio)
        except ValueError:
            raise ConfigError(f"--split {item!r}: expected NAME=RATIO, e.g. train=0.98") from None
    return splits


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    shards = subparsers.add_parser(
        "shards",
        help="write, verify and summarise sharded Parquet datasets",
        description="Sharded zstd Parquet datasets with a manifest (see docs/dataset-format.md).",
    )
    actions = shards.add_subparsers(dest="action", metavar="ACTION", required=True)

    w = actions.add_parser(
        "write",
        help="shard tables into a dataset directory (resumable: rerun after an interruption)",
        description="Assigns each row to a split by a stable hash of its group key and writes "
        "zstd Parquet shards plus manifest.json. Rows whose record id is already in the dataset "
        "are skipped, so rerunning with --append after an interruption, or with more input, is safe.",
    )
    w.add_argument("inputs", nargs="+", help="input tables (.parquet read in batches; .jsonl/.csv)")
    w.add_argument("-o", "--output", required=True, help="dataset directory")
    w.add_argument(
        "--append",
        action="store_true",
        help="add to the dataset already in --output (rows whose record id it holds are skipped; "
        "also how an interrupted write resumes)",
    )
    w.add_argument(
        "--split",
        action="append",
        metavar="NAME=RATIO",
        help="a split and its share (repeat; default train=0.98 val=0.02)",
    )
    w.add_argument("--group-key", default="cluster_id", help="column that decides the split (default cluster_id)")
    w.add_argument("--record-id", default="record_id", help="string column identifying a record (default record_id)")
    w.add_argument("--buckets", type=int_at_least(1, MAX_BUCKETS), default=1, help="hash buckets per split")
    w.add_argument(
        "--target-size",
        type=byte_size_at_most(MAX_TARGET_SHARD_BYTES),
        default="256MiB",
        help="shard size to roll at (default 256MiB)",
    )
    w.add_argument(
        "--row-group-size",
        type=byte_size_at_most(MAX_ROW_GROUP_BYTES),
        default="32MiB",
        help="row group size (default 32MiB)",
    )
    w.add_argument("--zstd-level", type=int_at_least(1, MAX_ZSTD_LEVEL), default=3, help="zstd level 1-22")
    w.add_argument(
        "--pair-schema",
        action="store_true",
        help="select and cast the columns to the LiVO pair schema and validate them",
    )
    w.add_argument(
        "--metadata", action="append", metavar="KEY=VALUE", help="creation metadata stored in the manifest (repeat)"
    )
    w.set_defaults(run=run_write)

    v = actions.add_parser("verify", help="recompute hashes and row counts; exit 1 on any problem")
    v.add_argument("directory", help="dataset directory")
    v.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    v.set_defaults(run=run_verify)

    s = actions.add_parser("stats", help="row counts per split, value and category")
    s.add_argument("directory", help="dataset directory")
    s.add_argument(
        "--by", action="append", help="a column to count by (repeat; default: value_id and category where present)"
    )
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.set_defaults(run=run_stats)


def _batches(path: str) -> Iterator[Any]:
    import pyarrow.parquet as pq

    from livo.data.io import file_format, named_read_errors, read_table

    if file_format(path) == "parquet":
        with named_read_errors(path, "parquet"):
            yield from pq.ParquetFile(path).iter_batches(batch_size=4096)
    else:
        yield read_table(path)


def _key_columns(path: str, group_key: str, record_id: str) -> Any:
    """The record-id column of one input (a pyarrow ChunkedArray), after checking that the input can
    be read and has both key columns. Parquet inputs are read for that column only."""
    import pyarrow.parquet as pq

    from livo.data.io import file_format, named_read_errors, read_table

    if file_format(path) == "parquet":
        with named_read_errors(path, "parquet"):
            parquet = pq.ParquetFile(path)
            columns = parquet.schema_arrow.names
            _check_key_columns(path, columns, group_key, record_id)
            return parquet.read(columns=[record_id]).column(0)
    table = read_table(path)
    if file_format(path) != "txt" and table.num_rows == 0:
        # An empty text-format file reads as an empty prompt table, whose columns it does not have.
        raise InputError(f"{path}: the file is empty (no rows to write)")
    _check_key_columns(path, table.column_names, group_key, record_id)
    return table.column(record_id)


def _check_key_columns(path: str, columns: list[str], group_key: str, record_id: str) -> None:
    for flag, column in (("--group-key", group_key), ("--record-id", record_id)):
        if column not in columns:
            raise InputError(f"{path}: no column {column!r} ({flag}); its columns are {columns}")


def check_inputs(paths: list[str], *, group_key: str, record_id: str) -> None:
    """Checks every input before the dataset is opened: each can be read, has the key columns, and
    no record id appears twice, within an input or across them. The writer skips a row whose id it
    holds (that is how a rerun resumes), so a repeated id in the input would silently drop rows and
    report them as already present. Text inputs are parsed here and again when written, which keeps
    only one of them in memory at a time."""
    import polars as pl

    earlier = pl.DataFrame(schema={"id": pl.String, "input": pl.UInt32})
    for index, path in enumerate(paths):
        ids = _comparable_ids(_key_columns(path, group_key, record_id))
        if ids is None:
            continue  # not text: the writer refuses the column's type, naming it
        repeated = (
            ids.value_counts(name="rows").filter(pl.col("rows") > 1).sort(["rows", "id"], descending=[True, False])
        )
        if repeated.height:
            shown = ", ".join(f"{i!r} ({n} rows)" for i, n in repeated.head(SHOWN_IDS).iter_rows())
            raise InputError(
                f"{path}: {repeated.height:,} record id(s) (column {record_id!r}, --record-id) repeat within "
                f"this input: {shown}; every row needs its own id (rows with an id already written are skipped)"
            )
        clash = earlier.join(ids.to_frame(), on="id", how="semi").sort("input", "id")
        if clash.height:
            shown = ", ".join(repr(i) for i in clash["id"].head(SHOWN_IDS))
            raise InputError(
                f"{path}: {clash.height:,} record id(s) (column {record_id!r}, --record-id) are also in "
                f"{paths[clash['input'][0]]}: {shown}; every row needs its own id (rows with an id already "
                "written are skipped)"
            )
        earlier = pl.concat([earlier, ids.to_frame().with_columns(input=pl.lit(index, pl.UInt32))])


def _comparable_ids(column: Any) -> Any:
    """The non-null ids of a record-id column as a polars String Series named ``id``, or None for
    a column that is not text (the writer refuses it; nulls are refused there too)."""
    import polars as pl
    import pyarrow as pa

    kind = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)):
        return None
    series = pl.Series("id", column.cast(pa.large_string()) if kind != column.type else column)
    return series.cast(pl.String).drop_nulls()


def run_write(args: argparse.Namespace) -> int:
    import pyarrow as pa

    from livo.data.io import INPUT_SUFFIXES
    from livo.data.schema import PAIR_SCHEMA, conform_pairs, validate_pairs
    from livo.data.shards import ShardConfig, ShardWriter, check_dataset_output
    from livo.user_paths import input_file

    # The flags first, then the paths, then the inputs' contents: the cheapest mistake is found first.
    metadata = {}
    for item in args.metadata or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--metadata {item!r}: expected KEY=VALUE")
        if key in metadata:
            raise ConfigError(f"--metadata {item!r}: key {key!r} is given twice")
        metadata[key] = value
    splits = parse_splits(args.split)
    for path in args.inputs:
        input_file(path, flag="input", suffixes=INPUT_SUFFIXES)
    before = check_dataset_output(args.output, flag="--output", append=args.append)
    check_inputs(args.inputs, group_key=args.group_key, record_id=args.record_id)
    config = ShardConfig(
        splits=splits,
        group_key=args.group_key,
        record_id=args.record_id,
        buckets=args.buckets,
        target_shard_bytes=args.target_size,
        row_group_bytes=args.row_group_size,
        zstd_level=args.zstd_level,
        metadata=metadata,
    )
    rows = written = skipped = 0
    with ShardWriter(args.output, config) as writer:
        for path in args.inputs:
            for part in _batches(path):
                if args.pair_schema:
                    table = conform_pairs(pa.table(part))
                    validate_pairs(table)
                    part = table.cast(PAIR_SCHEMA)
                stats = _write_part(writer, part, path)
                rows, written, skipped = rows + stats.rows, written + stats.written, skipped + stats.skipped
        manifest = writer.close()
    per_split = "  ".join(f"{s} {manifest.rows(s):,}" for s in manifest.splits)
    already = f", skipped {skipped:,} already present" if skipped else ""
    print(f"read {rows:,} rows: wrote {written:,} new{already} (total {manifest.rows():,}; {before:,} before)")
    print(f"{args.output}: {len(manifest.shards)} shards, {manifest.rows():,} rows ({per_split})")
    return 0


def _write_part(writer: ShardWriter, part: Any, path: str) -> WriteStats:
    """Writes one part of the input ``path``; rows that do not fit the dataset's columns are an
    error naming the input they came from."""
    from livo.data.shards import SchemaMismatchError

    try:
        return writer.write(part)
    except SchemaMismatchError as error:
        raise InputError(f"{path}: {error}") from error


def markdown_table(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    """A GitHub-flavoured Markdown table (header, separator, one line per row)."""

    def cell(value: Any) -> str:
        return "" if value is None else str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def run_verify(args: argparse.Namespace) -> int:
    from livo.data.shards import verify_shards

    report = verify_shards(args.directory, progress=False if args.no_progress else sys.stderr.isatty())
    for p in report.problems:
        print(f"{p.kind:<10} {p.shard}: {p.detail}")
    if not report.ok:
        print(f"{args.directory}: {len(report.problems)} problem(s) in {report.shards} listed shards", file=sys.stderr)
        return 1
    print(f"{args.directory}: ok, {report.shards} shards, {report.rows:,} rows, {report.bytes:,} bytes")
    return 0


def run_stats(args: argparse.Namespace) -> int:
    from livo.data.shards import shard_stats

    frame = shard_stats(args.directory, by=args.by)
    if args.json:
        print(json.dumps(frame.to_dicts(), indent=1))
        return 0
    import polars as pl

    totals = frame.group_by("split").agg(pl.col("rows").sum()).sort("split")
    for row in totals.iter_rows(named=True):
        print(f"split {row['split']}: {row['rows']:,} rows")
    print(markdown_table(frame.columns, frame.rows()))
    return 0
