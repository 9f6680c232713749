"""The LiVO pair record: one prompt, its value principles, an aligned and a violating image.

Every dataset the builder writes and the trainer reads has these columns (documented with their
meaning in ``docs/dataset-format.md``). Images are PNG bytes so any Parquet reader can hand them to
an image decoder. Creation metadata lives in ordinary columns the producer fills, never in file
metadata, so the same records always give byte-identical shards.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from livo.errors import InputError

PAIR_SCHEMA_VERSION = "livo.pair/2"
# Version 1 has no value_ids/value_texts columns: one value per record, in value_id/value_text.
PAIR_SCHEMA_VERSION_1 = "livo.pair/1"

JUDGE_SCORE = pa.struct(
    [
        pa.field("judge", pa.string()),
        pa.field("aligned", pa.float64()),
        pa.field("violating", pa.float64()),
    ]
)

PAIR_SCHEMA = pa.schema(
    [
        pa.field("record_id", pa.string()),
        pa.field("cluster_id", pa.int64()),
        pa.field("prompt", pa.string()),
        pa.field("aligned_prompt", pa.string()),
        pa.field("value_id", pa.string()),
        pa.field("value_text", pa.string()),
        pa.field("value_ids", pa.list_(pa.string())),
        pa.field("value_texts", pa.list_(pa.string())),
        pa.field("category", pa.string()),
        pa.field("seed", pa.int64()),
        pa.field("aligned_image", pa.binary()),
        pa.field("violating_image", pa.binary()),
        pa.field("judge_scores", pa.list_(JUDGE_SCORE)),
        pa.field("model_id", pa.string()),
        pa.field("created_by", pa.string()),
        pa.field("run_id", pa.string()),
        pa.field("created_at", pa.string()),
    ]
)

# Columns that must hold a value in every row: identity, split key, the pair itself.
REQUIRED_COLUMNS = (
    "record_id",
    "cluster_id",
    "prompt",
    "value_id",
    "value_text",
    "value_ids",
    "value_texts",
    "aligned_image",
    "violating_image",
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Images are written as PNG; JPEG and WebP are read too, since pair datasets of other tools hold
# them (Pick-a-Pic, Diffusion-DPO's training set, stores JPEG), and the trainer decodes what Pillow
# reads. Each format by its signature: (offset, bytes) parts that must all match.
IMAGE_SIGNATURES = {
    "PNG": ((0, PNG_MAGIC),),
    "JPEG": ((0, b"\xff\xd8\xff"),),
    "WebP": ((0, b"RIFF"), (8, b"WEBP")),
}


def pair_table(records: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Builds a pair table from dicts (missing optional keys become null) and validates it. A record
    without ``value_ids``/``value_texts`` has one value: its ``value_id``/``value_text``."""
    rows = [_with_value_lists(dict(r)) for r in records]
    try:
        table = pa.Table.from_pylist(rows, schema=PAIR_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise InputError(f"pair records do not fit {PAIR_SCHEMA_VERSION}: {error}") from error
    validate_pairs(table)
    return table


def _with_value_lists(row: dict[str, Any]) -> dict[str, Any]:
    for column, first in (("value_ids", "value_id"), ("value_texts", "value_text")):
        if row.get(column) is None and row.get(first) is not None:
            row[column] = [row[first]]
    return row


def conform_pairs(table: pa.Table) -> pa.Table:
    """Selects and orders the pair columns and casts them to :data:`PAIR_SCHEMA` (e.g. the
    ``large_string``/``string_view`` columns polars produces), raising :class:`InputError` that
    names a missing or uncastable column. A ``livo.pair/1`` table (no ``value_ids``/``value_texts``)
    becomes version 2 with one value per record."""
    names = table.column_names
    if "value_ids" not in names and "value_texts" not in names and {"value_id", "value_text"} <= set(names):
        for column, first in (("value_ids", "value_id"), ("value_texts", "value_text")):
            singles = pc.cast(table.column(first), pa.string())
            offsets = pa.array(range(len(singles) + 1), pa.int32())
            lists = pa.chunked_array(
                [pa.ListArray.from_arrays(offsets, singles.combine_chunks())], pa.list_(pa.string())
            )
            table = table.append_column(column, lists)
    return conform_to_schema(table, PAIR_SCHEMA, f"pair table ({PAIR_SCHEMA_VERSION})")


def conform_to_schema(table: pa.Table, schema: pa.Schema, what: str) -> pa.Table:
    """Selects and orders ``schema``'s columns of ``table`` and casts them to its types; errors name
    ``what`` and the missing or uncastable column."""
    missing = [name for name in schema.names if name not in table.column_names]
    if missing:
        raise InputError(f"{what} lacks column(s) {', '.join(missing)}")
    columns = []
    for target in schema:
        column = table.column(target.name)
        try:
            columns.append(column if column.type == target.type else column.cast(target.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as error:
            raise InputError(
                f"{what}: column {target.name}: {column.type} cannot become {target.type}: {error}"
            ) from error
    return pa.Table.from_arrays(columns, schema=schema)


def validate_pairs(table: pa.Table) -> None:
    """Checks required values are present and images are PNG; the error names column and row."""
    for name in REQUIRED_COLUMNS:
        column = table.column(name)
        if column.null_count:
            row = next(i for i, v in enumerate(column.is_null().to_pylist()) if v)
            raise InputError(f"pair column {name}: null at row {row + 1}")
    _validate_value_lists(table)
    for name in ("aligned_image", "violating_image"):
        unknown = pc.invert(_is_image(table.column(name)))
        if pc.any(unknown).as_py():
            row = pc.index(unknown, True).as_py()
            raise InputError(f"pair column {name}: row {row + 1} is not PNG, JPEG or WebP data")


def _is_image(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """True where the bytes start with one of :data:`IMAGE_SIGNATURES` (the header only: a file cut
    short is found when the trainer decodes it)."""
    found = None
    for parts in IMAGE_SIGNATURES.values():
        matches = None
        for offset, magic in parts:
            head = pc.binary_slice(column, offset, offset + len(magic))
            part = pc.fill_null(pc.equal(head, pa.scalar(magic, head.type)), False)
            matches = part if matches is None else pc.and_(matches, part)
        found = matches if found is None else pc.or_(found, matches)
    assert found is not None
    return found


def _validate_value_lists(table: pa.Table) -> None:
    """Every record's ``value_ids``/``value_texts`` are non-empty, of one length, free of nulls and
    repeats, and start with its ``value_id``/``value_text`` (the first value is the primary one)."""
    ids, texts = table.column("value_ids"), table.column("value_texts")
    lengths = pc.list_value_length(ids)
    bad = pc.or_(pc.less(lengths, 1), pc.not_equal(lengths, pc.list_value_length(texts)))
    if pc.any(bad).as_py():
        row = pc.index(bad, True).as_py()
        raise InputError(
            f"pair row {row + 1}: value_ids {ids[row]} and value_texts {texts[row]} need one text per value, at least one"
        )
    for name, column in (("value_ids", ids), ("value_texts", texts)):
        if pc.list_flatten(column).null_count:
            row = next(i for i, items in enumerate(column.to_pylist()) if None in items)
            raise InputError(f"pair row {row + 1}: {name} {column[row]} holds a null")
    for name, lists, first in (("value_ids", ids, "value_id"), ("value_texts", texts, "value_text")):
        differs = pc.not_equal(pc.list_element(lists, 0), table.column(first))
        if pc.any(differs).as_py():
            row = pc.index(differs, True).as_py()
            raise InputError(
                f"pair row {row + 1}: {name} must start with {first} {table.column(first)[row].as_py()!r}, got {lists[row]}"
            )
    several = pc.greater(lengths, 1)
    if pc.any(several).as_py():
        for row, items in zip(pc.indices_nonzero(several).to_pylist(), pc.filter(ids, several).to_pylist()):
            if len(set(items)) != len(items):
                raise InputError(f"pair row {row + 1}: value_ids {items} repeat a value")
