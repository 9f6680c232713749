"""Reading and writing prompt tables in the formats users have: ``.txt`` (one prompt a line),
``.jsonl``, ``.csv`` and ``.parquet``.

Every stage reads its input through :func:`read_prompt_table` and writes through
:func:`write_table`, so formats, error messages and atomic writes are the same everywhere.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from livo.errors import InputError
from livo.permissions import make_shareable

FORMATS = {".txt": "txt", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
# Outputs that add columns (dedup, value selection) need a format with columns.
OUTPUT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
TEXT_COLUMN = "prompt"


def file_format(path: str | os.PathLike[str]) -> str:
    """The table format of ``path``, from its extension."""
    suffix = Path(path).suffix.lower()
    try:
        return FORMATS[suffix]
    except KeyError:
        known = ", ".join(sorted(FORMATS))
        raise InputError(f"{path}: unsupported file extension {suffix!r} (supported: {known})") from None


def read_table(path: str | os.PathLike[str]) -> pa.Table:
    """Reads a whole table; a ``.txt`` file becomes one string column named ``prompt``."""
    from livo import _native

    path = Path(path)
    fmt = file_format(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder; a prompt file is needed")
    if fmt in ("csv", "jsonl") and _is_blank(path):
        # An empty file holds no prompts whatever its format: the same empty table as an empty .txt.
        return pa.table({TEXT_COLUMN: pa.array([], pa.large_string())})
    if fmt == "txt":
        return pa.table({TEXT_COLUMN: pa.array(_native.read_text_lines(str(path)), pa.large_string())})
    try:
        if fmt == "parquet":
            return pq.read_table(path)
        import polars as pl

        if fmt == "jsonl":
            # Every row informs the schema: a list column whose first rows are all empty ("values":
            # []) would otherwise be typed as a list of nulls and read its later strings as nulls.
            frame = pl.read_ndjson(path, infer_schema_length=None)
        else:
            frame = pl.read_csv(path, infer_schema_length=10_000)
        return frame.to_arrow()
    except (OSError, ValueError, pa.ArrowException) as error:
        raise InputError(f"{path}: cannot be read as {fmt}: {error}") from error
    except Exception as error:  # polars raises its own exception hierarchy
        if type(error).__module__.startswith("polars"):
            raise InputError(f"{path}: cannot be read as {fmt}: {error}") from error
        raise


def _is_blank(path: Path) -> bool:
    """True for an empty file, or one of whitespace only (read in small blocks, never whole)."""
    with path.open("rb") as handle:
        while block := handle.read(1 << 16):
            if block.strip():
                return False
    return True


def text_column(table: pa.Table, column: str | None, path: str | os.PathLike[str]) -> pa.Array:
    """The string column ``column`` (default: ``prompt``, or the only column) as one Arrow array."""
    if column is None:
        if TEXT_COLUMN in table.column_names:
            column = TEXT_COLUMN
        elif table.num_columns == 1:
            column = table.column_names[0]
        else:
            raise InputError(f"{path}: no 'prompt' column; choose one with --column from {table.column_names}")
    if column not in table.column_names:
        raise InputError(f"{path}: no column {column!r}; columns are {table.column_names}")
    values = table.column(column)
    if pa.types.is_dictionary(values.type) and _is_text(values.type.value_type):
        # A categorical column (pandas' category, polars' Categorical, as Parquet keeps them): decoded.
        values = values.cast(values.type.value_type)
    if not _is_text(values.type):
        raise InputError(f"{path}: column {column!r} has type {values.type}, expected strings")
    return values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)


def read_prompt_table(path: str | os.PathLike[str], column: str | None = None) -> tuple[pa.Table, pa.Array]:
    """Reads ``path`` and returns the whole table plus its prompt column (see :func:`text_column`)."""
    table = read_table(path)
    return table, text_column(table, column, path)


def write_table(table: pa.Table, path: str | os.PathLike[str]) -> None:
    """Writes ``table`` in the format of ``path``'s extension, atomically (temp file + rename), so a
    crash never leaves a half-written file under the final name."""
    path = Path(path)
    fmt = file_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if fmt == "parquet":
            pq.write_table(table, tmp, compression="zstd")
        elif fmt == "txt":
            if table.num_columns != 1:
                raise InputError(f"{path}: a .txt output holds one column, the table has {table.column_names}")
            lines = table.column(0).to_pylist()
            if any(line is not None and "\n" in line for line in lines):
                raise InputError(f"{path}: some values contain newlines; use .jsonl, .csv or .parquet")
            tmp.write_text("".join(f"{line or ''}\n" for line in lines), encoding="utf-8")
        else:
            import polars as pl

            frame = pl.DataFrame(pl.from_arrow(table))
            if fmt == "jsonl":
                frame.write_ndjson(tmp)
            else:
                frame.write_csv(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        make_shareable(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
