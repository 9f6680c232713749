"""``livo shards write|verify|stats``: build, check and summarise a sharded Parquet dataset."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import Any

from livo.arg_types import parse_size, positive_int
from livo.errors import ConfigError, InputError


def parse_splits(items: list[str] | None) -> dict[str, float]:
    if not items:
        return {"train": 0.98, "val": 0.02}
    splits: dict[str, float] = {}
    for item in items:
        name, _, ratio = item.partition("=")
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
    w.add_argument("--buckets", type=positive_int, default=1, help="hash buckets per split")
    w.add_argument("--target-size", default="256MiB", help="shard size to roll at (default 256MiB)")
    w.add_argument("--row-group-size", default="32MiB", help="row group size (default 32MiB)")
    w.add_argument("--zstd-level", type=positive_int, default=3, help="zstd level 1-22")
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

    from livo.data.io import file_format, read_table

    if file_format(path) == "parquet":
        yield from pq.ParquetFile(path).iter_batches(batch_size=4096)
    else:
        yield read_table(path)


def run_write(args: argparse.Namespace) -> int:
    import pyarrow as pa

    from livo.data.io import INPUT_SUFFIXES
    from livo.data.schema import PAIR_SCHEMA, conform_pairs, validate_pairs
    from livo.data.shards import ShardConfig, ShardWriter, check_dataset_output
    from livo.user_paths import input_file

    for path in args.inputs:
        input_file(path, flag="input", suffixes=INPUT_SUFFIXES)
    before = check_dataset_output(args.output, flag="--output", append=args.append)
    metadata = {}
    for item in args.metadata or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--metadata {item!r}: expected KEY=VALUE")
        metadata[key] = value
    config = ShardConfig(
        splits=parse_splits(args.split),
        group_key=args.group_key,
        record_id=args.record_id,
        buckets=args.buckets,
        target_shard_bytes=parse_size(args.target_size),
        row_group_bytes=parse_size(args.row_group_size),
        zstd_level=args.zstd_level,
        metadata=metadata,
    )
    rows = written = skipped = 0
    with ShardWriter(args.output, config) as writer:
        for path in args.inputs:
            for part in _batches(path):
                for flag, column in (("--group-key", args.group_key), ("--record-id", args.record_id)):
                    if column not in part.schema.names:
                        raise InputError(f"{path}: no column {column!r} ({flag}); its columns are {part.schema.names}")
                if args.pair_schema:
                    table = conform_pairs(pa.table(part))
                    validate_pairs(table)
                    part = table.cast(PAIR_SCHEMA)
                stats = writer.write(part)
                rows, written, skipped = rows + stats.rows, written + stats.written, skipped + stats.skipped
        manifest = writer.close()
    per_split = "  ".join(f"{s} {manifest.rows(s):,}" for s in manifest.splits)
    already = f", skipped {skipped:,} already present" if skipped else ""
    print(f"read {rows:,} rows: wrote {written:,} new{already} (total {manifest.rows():,}; {before:,} before)")
    print(f"{args.output}: {len(manifest.shards)} shards, {manifest.rows():,} rows ({per_split})")
    return 0


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
    import polars as pl

    totals = frame.group_by("split").agg(pl.col("rows").sum()).sort("split")
    for row in totals.iter_rows(named=True):
        print(f"split {row['split']}: {row['rows']:,} rows")
    with pl.Config(tbl_rows=-1, tbl_hide_dataframe_shape=True, tbl_formatting="ASCII_MARKDOWN"):
        print(frame)
    return 0
