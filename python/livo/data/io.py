"""Reading and writing prompt tables in the formats users have: ``.txt`` (one prompt a line),
``.jsonl``, ``.csv`` and ``.parquet``; the text formats may also come compressed (``.gz``, ``.bz2``,
``.zst``: ``prompts.jsonl.gz``), as prompt collections are often published.

Every stage reads its input through :func:`read_prompt_table` and writes through
:func:`write_table`, so formats, error messages and atomic writes are the same everywhere.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from livo.errors import InputError, InvalidUtf8Error, LivoError
from livo.permissions import atomic_file

FORMATS = {".txt": "txt", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
# Outputs that add columns (dedup, value selection) need a format with columns.
OUTPUT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
# Whole-file compression of the text formats, by the extension after the format's (Arrow's codecs).
# Parquet is left out: it compresses its own pages, and a compressed Parquet file cannot be read by
# row group.
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd"}
INPUT_SUFFIXES = (*FORMATS, *(f + c for f in FORMATS if FORMATS[f] != "parquet" for c in COMPRESSIONS))
OUTPUT_SUFFIXES = (
    *OUTPUT_FORMATS,
    *(f + c for f in OUTPUT_FORMATS if OUTPUT_FORMATS[f] != "parquet" for c in COMPRESSIONS),
)
TEXT_COLUMN = "prompt"
_BOM = b"\xef\xbb\xbf"


def file_format(path: str | os.PathLike[str]) -> str:
    """The table format of ``path``, from its extension (``prompts.jsonl.gz`` is ``jsonl``)."""
    return _format_and_compression(path)[0]


def file_compression(path: str | os.PathLike[str]) -> str | None:
    """The codec that compresses ``path`` as a whole (``gzip``, ``bz2``, ``zstd``), or None."""
    return _format_and_compression(path)[1]


def _format_and_compression(path: str | os.PathLike[str]) -> tuple[str, str | None]:
    name = Path(path)
    suffix = name.suffix.lower()
    compression = COMPRESSIONS.get(suffix)
    if compression is not None:
        inner = name.with_suffix("").suffix.lower()
        if FORMATS.get(inner) == "parquet":
            raise InputError(
                f"{path}: a compressed Parquet file cannot be read by row group; decompress it "
                "(Parquet compresses its own pages)"
            )
        if inner in FORMATS:
            return FORMATS[inner], compression
        suffix = inner + suffix
    try:
        return FORMATS[suffix], None
    except KeyError:
        known = ", ".join(sorted(FORMATS)) + "; " + ", ".join(sorted(COMPRESSIONS)) + " after a text format"
        raise InputError(f"{path}: unsupported file extension {suffix!r} (supported: {known})") from None


def _open_input(path: str | os.PathLike[str]) -> io.BufferedReader:
    """``path`` opened for reading bytes, decompressed as it is read when its name says it is
    compressed; a line-iterable, buffered file either way."""
    compression = file_compression(path)
    if compression is None:
        return open(path, "rb")
    return io.BufferedReader(pa.input_stream(os.fspath(path), compression=compression), 1 << 20)


def read_table(path: str | os.PathLike[str]) -> pa.Table:
    """Reads a whole table; a ``.txt`` file becomes one string column named ``prompt``."""
    from livo import _native

    path = Path(path)
    fmt, compression = _format_and_compression(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder; a prompt file is needed")
    if compression is not None:
        return _read_compressed(path, fmt, compression)
    if fmt in ("csv", "jsonl") and _is_blank(path):
        # An empty file holds no prompts whatever its format: the same empty table as an empty .txt.
        return pa.table({TEXT_COLUMN: pa.array([], pa.large_string())})
    if fmt == "parquet":
        with named_read_errors(path, fmt):
            return pq.read_table(path)
    with path.open("rb") as handle:
        head = handle.read(HEAD_BYTES)
    check_text_head(head, fmt, path)
    if fmt == "txt":
        return pa.table({TEXT_COLUMN: pa.array(_native.read_text_lines(str(path)), pa.large_string())})
    if fmt == "jsonl":
        with path.open("rb") as handle:
            _check_surrogate_escapes(handle, path)
    # A BOM before JSON Lines is refused by polars' parser; CSV's is handled by polars itself.
    source: Path | io.BytesIO = path
    if fmt == "jsonl" and head.startswith(_BOM):
        source = io.BytesIO(path.read_bytes()[len(_BOM) :])
    with named_read_errors(path, fmt), _first_bad_json_line(path, fmt):
        return _checked_columns(_parse_columns(source, fmt), fmt, path)


def _parse_columns(source: Path | io.BytesIO, fmt: str) -> pa.Table:
    import polars as pl

    if fmt == "jsonl":
        # Every row informs the schema: a list column whose first rows are all empty ("values": [])
        # would otherwise be typed as a list of nulls and read its later strings as nulls.
        return pl.read_ndjson(source, infer_schema_length=None).to_arrow()
    frame = pl.read_csv(source, infer_schema=False)
    # polars renames a repeated header name ("prompt", "prompt_duplicated_0"): two columns of one
    # name, one of them silently renamed, are refused instead.
    repeated = sorted(
        {m.group(1) for c in frame.columns if (m := re.fullmatch(r"(.+)_duplicated_\d+", c))} & set(frame.columns)
    )
    if repeated:
        raise ValueError(f"the header names column {repeated[0]!r} more than once")
    return _without_blank_lines(_lossless_types(frame).to_arrow(), source)


def _without_blank_lines(table: pa.Table, source: Path | io.BytesIO) -> pa.Table:
    """A CSV's blank lines are no rows (as pandas and Python's ``csv`` read them); polars made each
    one a row of nulls, so a file ending in two newlines had a prompt more. A line of separators
    only (``,,``) stays a row of empty fields. Only a table with a row of nulls is read again, with
    Python's reader, which tells the two apart (a blank line inside quotes is text)."""
    import csv

    if table.num_rows == 0 or not any(column.null_count for column in table.columns):
        return table
    all_null = (
        pc.and_(*[pc.is_null(c) for c in table.columns]) if table.num_columns > 1 else pc.is_null(table.column(0))
    )
    if not pc.any(all_null).as_py():
        return table
    data = source.getvalue() if isinstance(source, io.BytesIO) else source.read_bytes()
    records = csv.reader(io.StringIO(data.decode("utf-8-sig", errors="replace"), newline=""))
    header = next((record for record in records if record), None)
    blank = [record == [] for record in records]
    if header is None or len(blank) != table.num_rows:
        return table  # read otherwise than polars did: left as polars read it
    return table.filter(pa.array([not b for b in blank]))


def _lossless_types(frame: Any) -> Any:
    """A CSV's text columns, each typed as integers (or floats) only where every value reads back
    as the same text: a reader's type guess turns an id "007" into 7, a zip code "01234" into 1234,
    and fails on an integer wider than 64 bits; those columns stay text."""
    import polars as pl

    columns = []
    for column in frame.get_columns():
        for dtype in (pl.Int64, pl.Float64):
            typed = column.cast(dtype, strict=False)
            same = typed.is_null() == column.is_null()
            filled = column.null_count() < len(column)
            finite = dtype == pl.Int64 or bool(typed.is_finite().fill_null(True).all())
            if filled and finite and same.all() and (typed.cast(pl.String) == column).fill_null(True).all():
                column = typed  # "NaN" or "inf" stay text: JSON has no such number (written as null)
                break
        columns.append(column)
    return pl.DataFrame(columns)


@contextmanager
def named_read_errors(where: str | os.PathLike[str], what: str) -> Iterator[None]:
    """The readers' errors (I/O, Arrow's, polars' own hierarchy) as an InputError naming the input
    and the format it was read as: the user sees which file failed, not a parser's traceback."""
    try:
        yield
    except LivoError:  # already says what is wrong with which input
        raise
    except (OSError, ValueError, pa.ArrowException) as error:
        raise InputError(f"{where}: cannot be read as {what}: {error}") from error
    except Exception as error:
        if type(error).__module__.startswith("polars"):
            raise InputError(f"{where}: cannot be read as {what}: {error}") from error
        raise


def _read_compressed(path: Path, fmt: str, compression: str) -> pa.Table:
    """A compressed text-format file, read as its uncompressed twin would be: the same line rules
    for ``.txt`` (:func:`_text_lines`) and the same parsers for ``.jsonl`` and ``.csv``."""
    with named_read_errors(path, f"{fmt} ({compression})"):  # a truncated or corrupt stream included
        with _open_input(path) as handle:
            if fmt == "txt":
                check_text_head(handle.peek(HEAD_BYTES)[:HEAD_BYTES], fmt, path)
                return pa.table({TEXT_COLUMN: pa.array(_text_lines(handle, path), pa.large_string())})
            data = handle.read()
        if not data.strip():
            return pa.table({TEXT_COLUMN: pa.array([], pa.large_string())})
        check_text_head(data[:HEAD_BYTES], fmt, path)
        if fmt == "jsonl":
            _check_surrogate_escapes(io.BytesIO(data), path)
        with _first_bad_json_line(path, fmt):
            table = _parse_columns(io.BytesIO(data.removeprefix(_BOM) if fmt == "jsonl" else data), fmt)
            return _checked_columns(table, fmt, path)


_UTF16_32_BOMS = {
    b"\xff\xfe\x00\x00": "UTF-32",
    b"\x00\x00\xfe\xff": "UTF-32",
    b"\xff\xfe": "UTF-16",
    b"\xfe\xff": "UTF-16",
}


def check_text_head(head: bytes, fmt: str, where: str | os.PathLike[str]) -> None:
    """The checks of a text-format file's first bytes (``head``, up to 64 KiB), made before it is
    parsed: UTF-8 rather than UTF-16, and (CSV, JSON Lines) lines ending in LF or CRLF. Public for
    readers that parse a file in pieces, which see its head only in the first piece."""
    if fmt == "txt":
        _check_not_utf16(head, where)
    else:
        _check_utf8_text(head, where)
        _check_line_ends(head, fmt, where)


HEAD_BYTES = 1 << 16  # how much of a file check_text_head is given


def _check_utf8_text(head: bytes, where: str | os.PathLike[str]) -> None:
    """CSV and JSON Lines must be UTF-8: a UTF-16 file (as Windows tools save "Unicode text") made
    polars panic on the NUL bytes in its header. Checked on the file's first bytes."""
    _check_no_utf16_bom(head, where)
    if b"\x00" in head:
        raise InputError(f"{where}: not UTF-8 text (it holds NUL bytes: UTF-16 or a binary file); save it as UTF-8")


def _check_no_utf16_bom(head: bytes, where: str | os.PathLike[str]) -> None:
    for bom, encoding in _UTF16_32_BOMS.items():
        if head.startswith(bom):
            raise InputError(f"{where}: not UTF-8 text (it starts with a {encoding} byte-order mark); save it as UTF-8")


def _check_not_utf16(head: bytes, where: str | os.PathLike[str]) -> None:
    """A ``.txt`` file may hold NUL bytes, but UTF-16 text (a BOM, or NULs between every other
    byte) read as UTF-8 became prompts of letters and NULs without a word."""
    _check_no_utf16_bom(head, where)
    if len(head) >= 8 and head.count(0) * 3 >= len(head):
        raise InputError(
            f"{where}: not UTF-8 text (every other byte is NUL: UTF-16 without a byte-order mark); save it as UTF-8"
        )


def _check_line_ends(head: bytes, fmt: str, where: str | os.PathLike[str]) -> None:
    """CSV and JSON Lines lines end in LF or CRLF; a file of CR-ended lines (classic Mac OS, some
    spreadsheet exports) was read as one header line: no rows, and exit 0."""
    if b"\r" in head and b"\n" not in head and len(head.splitlines()) > 1:
        raise InputError(f"{where}: its lines end in CR alone (classic Mac OS); save it with LF or CRLF line ends")


# A \uD800-\uDFFF escape that is not half of a pair (a high one followed by a low one), and whose
# backslash is not itself escaped. polars reads such an escape as NUL: two different prompts then
# became one. Emoji cut in half by a JavaScript tool's truncation end this way.
_HIGH = rb"\\u[dD][89abAB][0-9a-fA-F]{2}"
_LOW = rb"\\u[dD][c-fC-F][0-9a-fA-F]{2}"
_LONE_SURROGATE = re.compile(rb"(?<!\\)(?:\\\\)*(" + _HIGH + rb"(?!" + _LOW + rb")|(?<!" + _HIGH + rb")" + _LOW + rb")")


def _check_surrogate_escapes(handle: BinaryIO, where: str | os.PathLike[str]) -> None:
    """Refuses a JSON Lines file with a lone surrogate escape, naming its line (read in blocks of
    whole lines, each searched at C speed)."""
    line = 1
    while block := handle.read(1 << 23):
        block += handle.readline()
        found = find_lone_surrogate(block)
        if found is not None:
            offset, escape = found
            raise InputError(lone_surrogate_message(where, line + block.count(b"\n", 0, offset), escape))
        line += block.count(b"\n")


def find_lone_surrogate(lines: bytes) -> tuple[int, str] | None:
    """The first lone surrogate escape in ``lines`` (whole JSON Lines lines): its byte offset and
    its text, or None. Public for readers that parse a file in pieces."""
    found = _LONE_SURROGATE.search(lines)
    return None if found is None else (found.start(1), found.group(1).decode("ascii"))


def lone_surrogate_message(where: str | os.PathLike[str], line: int, escape: str) -> str:
    """The error for a lone surrogate escape on ``line`` of ``where``."""
    return (
        f"{where}: line {line}: {escape} is half of a UTF-16 surrogate pair, no character; "
        "fix the text (a cut emoji, say)"
    )


def _checked_columns(table: pa.Table, fmt: str, where: str | os.PathLike[str]) -> pa.Table:
    """A CSV read as one column named with a semicolon or a tab was separated by that (Excel in many
    locales): every line would have become one prompt, its id and other fields included."""
    if fmt == "csv" and table.num_columns == 1:
        name = table.column_names[0]
        separator = next((s for s in (";", "\t", "|") if s in name), None)
        if separator is not None:
            raise InputError(
                f"{where}: one column named {name!r}: the file looks separated by {separator!r}, and livo reads "
                "comma-separated CSV; save it with commas"
            )
    return table


@contextmanager
def _first_bad_json_line(where: str | os.PathLike[str], fmt: str) -> Iterator[None]:
    """When polars cannot parse a JSON Lines file, the error names the first line that is not a
    JSON value (polars' own says "at character 0" of a line it does not name)."""
    try:
        yield
    except Exception as error:
        if fmt != "jsonl" or not type(error).__module__.startswith("polars"):
            raise
        found = _find_bad_json_line(Path(where)) or _find_type_conflict(Path(where))
        if found is None:
            raise
        raise InputError(f"{where}: cannot be read as jsonl: {found}") from error


def _find_bad_json_line(path: Path) -> str | None:
    with _open_input(path) as handle:
        for number, raw in enumerate(handle, start=1):
            line = (raw.removeprefix(_BOM) if number == 1 else raw).rstrip(b"\r\n")
            if not line.strip():
                continue
            try:
                json.loads(line)
            except json.JSONDecodeError as error:
                return f"line {number} is not valid JSON ({error.msg}, column {error.colno})"
            except ValueError as error:  # not UTF-8
                return f"line {number} is not valid JSON ({error})"
    return None


# What a JSON value is, in error messages (by the Python type json.loads gives it).
_JSON_KINDS = {
    str: "a string",
    bool: "a boolean",
    int: "a number",
    float: "a number",
    list: "a list",
    dict: "an object",
}


def _find_type_conflict(path: Path) -> str | None:
    """The first line whose value for a key is of another JSON type than that key's first value (a
    number then a list, a number then an object): polars gives each key one type, and its error
    ("failed to determine supertype of struct[1] and struct[1]") names neither line nor key. Null
    and strings go with every type (polars reads such a column as text). Only read when parsing has
    failed."""
    first: dict[str, tuple[str, int]] = {}
    with _open_input(path) as handle:
        for number, raw in enumerate(handle, start=1):
            line = (raw.removeprefix(_BOM) if number == 1 else raw).strip()
            if not line:
                continue
            row = json.loads(line)
            if not isinstance(row, dict):
                return f"line {number} is not a JSON object (a row of JSON Lines is one)"
            for key, value in row.items():
                if value is None or isinstance(value, str):
                    continue
                kind = _JSON_KINDS[type(value)]
                seen = first.setdefault(key, (kind, number))
                if seen[0] != kind:
                    return (
                        f"line {number}: {key!r} is {kind} where line {seen[1]} has {seen[0]}; a column holds one type"
                    )
    return None


def _text_lines(handle: BinaryIO, where: str | os.PathLike[str]) -> list[str]:
    """The lines of a ``.txt`` stream by the rules of :func:`livo._native.read_text_lines`: ``\\n``
    or ``\\r\\n`` ends a line, a leading UTF-8 BOM is dropped, no row follows a final newline, and
    a line that is not UTF-8 is an error naming it."""
    lines: list[str] = []
    for number, raw in enumerate(handle, start=1):
        if number == 1:
            raw = raw.removeprefix(_BOM)
            if not raw:  # the file was a BOM alone: no row, as an empty file
                continue
        raw = raw.removesuffix(b"\n").removesuffix(b"\r")
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError as error:
            raise InvalidUtf8Error(
                f"{where}: line {number} is not valid UTF-8 (byte offset {error.start} in the line)"
            ) from None
    return lines


def _write_text_format(table: pa.Table, fmt: str, path: Path, stream: pa.NativeFile) -> None:
    """Writes ``table`` to ``stream`` as a ``.txt``, ``.jsonl`` or ``.csv`` file (``path`` names it in
    errors). CSV has no lists or records, so a nested column (``value_ids``, ``value_scores``,
    ``reasons``) is written as JSON text in its cells, which any JSON parser reads back."""
    if fmt == "txt":
        if table.num_columns != 1:
            raise InputError(f"{path}: a .txt output holds one column, the table has {table.column_names}")
        lines = table.column(0).to_pylist()
        if any(line is not None and "\n" in line for line in lines):
            raise InputError(f"{path}: some values contain newlines; use .jsonl, .csv or .parquet")
        stream.write("".join(f"{line or ''}\n" for line in lines).encode("utf-8"))
        return
    import polars as pl

    if fmt == "jsonl":
        pl.DataFrame(pl.from_arrow(table)).write_ndjson(stream)
        return
    for index, column in enumerate(table.schema):
        if pa.types.is_nested(column.type):
            cells = [None if v is None else json.dumps(v, ensure_ascii=False) for v in table.column(index).to_pylist()]
            table = table.set_column(index, column.name, pa.array(cells, pa.large_string()))
    pl.DataFrame(pl.from_arrow(table)).write_csv(stream)


def _is_blank(path: Path) -> bool:
    """True for an empty file, or one of whitespace only (read in small blocks, never whole)."""
    with path.open("rb") as handle:
        while block := handle.read(1 << 16):
            if block.strip():
                return False
    return True


def text_column(table: pa.Table, column: str | None, path: str | os.PathLike[str]) -> pa.Array:
    """The string column ``column`` (default: ``prompt``, or the only column) as one Arrow array."""
    if column is None and TEXT_COLUMN not in table.column_names and table.num_columns != 1:
        raise InputError(f"{path}: no 'prompt' column; choose one with --column from {table.column_names}")
    column = prompt_column_name(table, column)
    if column not in table.column_names:
        raise InputError(f"{path}: no column {column!r}; columns are {table.column_names}")
    values = table.column(column)
    if pa.types.is_dictionary(values.type) and _is_text(values.type.value_type):
        # A categorical column (pandas' category, polars' Categorical, as Parquet keeps them): decoded.
        values = values.cast(values.type.value_type)
    if not _is_text(values.type):
        raise InputError(f"{path}: column {column!r} has type {values.type}, expected strings")
    if values.num_chunks == 1:
        return values.chunk(0)
    if pa.types.is_string(values.type):
        # 32-bit offsets: chunks holding 2 GiB of text or more cannot be joined as they are.
        values = values.cast(pa.large_string())
    return values.combine_chunks()


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)


def read_prompt_table(path: str | os.PathLike[str], column: str | None = None) -> tuple[pa.Table, pa.Array]:
    """Reads ``path`` and returns the whole table plus its prompt column (see :func:`text_column`)."""
    table = read_table(path)
    prompts = text_column(table, column, path)
    check_json_prompts(path, table, prompt_column_name(table, column))
    return table, prompts


def check_json_prompts(path: str | os.PathLike[str], table: pa.Table, column: str) -> None:
    """For a JSON Lines ``path`` read into ``table``: an error naming the first line whose ``column``
    is not a string or null (:func:`first_non_string`). Other formats hold text or typed columns."""
    if table.num_rows and file_format(path) == "jsonl":
        found = first_non_string(path, column)
        if found is not None:
            raise InputError(f"{path}: line {found.line}: {found.problem}")


def prompt_column_name(table: pa.Table, column: str | None) -> str:
    """The column :func:`text_column` reads: ``column``, else ``prompt``, else the only column."""
    if column is not None:
        return column
    if TEXT_COLUMN in table.column_names or table.num_columns != 1:
        return TEXT_COLUMN
    return table.column_names[0]


class NonString(NamedTuple):
    """Where a JSON Lines file holds something other than a string in its prompt column."""

    line: int  # 1-based, every line counted
    row: int  # 0-based, blank lines not counted (as the readers count rows)
    problem: str  # "'prompt' is a number (42), not a string"


def first_non_string(jsonl: bytes | str | os.PathLike[str], column: str) -> NonString | None:
    """The first row of a JSON Lines file (or its bytes) whose ``column`` is neither a string nor
    null, or None. polars reads a
    column of strings and numbers as text ("42"), and a list as its JSON ('["a", "b"]'), so a prompt
    file with a stray number or list would be used as if those were prompts. Checked by Arrow's JSON
    reader, which refuses such a column in one fast pass; only then are the lines parsed one by one
    to name the row."""
    import pyarrow.json as pa_json

    options = pa_json.ParseOptions(
        explicit_schema=pa.schema([(column, pa.large_string())]), unexpected_field_behavior="ignore"
    )
    try:
        with _json_lines(jsonl) as handle:
            pa_json.read_json(handle, parse_options=options)
        return None
    except pa.ArrowInvalid:
        pass
    row_index = -1
    with _json_lines(jsonl) as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            row_index += 1
            try:
                record = json.loads(raw)
            except ValueError:
                return None  # not JSON: the reader's own error names it
            value = record.get(column) if isinstance(record, dict) else None
            if value is not None and not isinstance(value, str):
                shown = json.dumps(value, ensure_ascii=False)
                shown = shown if len(shown) <= 40 else shown[:37] + "..."
                return NonString(number, row_index, f"{column!r} is {_JSON_KINDS[type(value)]} ({shown}), not a string")
    return None  # another limit of the fast reader (a line over its block size): nothing to report


@contextmanager
def _json_lines(source: bytes | str | os.PathLike[str]) -> Iterator[io.BufferedReader[Any]]:
    """JSON Lines bytes or file (decompressed as its name says), past a UTF-8 byte-order mark."""
    opened: io.BufferedReader[Any] = (
        io.BufferedReader(io.BytesIO(source)) if isinstance(source, bytes) else _open_input(source)
    )
    with opened as handle:
        if handle.peek(len(_BOM)).startswith(_BOM):
            handle.read(len(_BOM))
        yield handle


def check_writable(schema: pa.Schema, path: str | os.PathLike[str]) -> None:
    """Refuses, before any work, a table that ``path``'s format cannot hold: bytes (an image column
    of a Hugging Face dataset) in ``.jsonl``, ``.csv`` or ``.txt`` (the writers failed at the end,
    in a panic or a traceback)."""
    fmt = file_format(path)
    if fmt == "parquet":
        return
    for field in schema:
        if _holds_bytes(field.type):
            raise InputError(
                f"{path}: column {field.name!r} holds bytes ({field.type}), which a .{fmt} file cannot; "
                "write .parquet, or drop the column"
            )


def _holds_bytes(kind: pa.DataType) -> bool:
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
        return True
    if pa.types.is_binary_view(kind):
        return True
    if pa.types.is_dictionary(kind):
        return _holds_bytes(kind.value_type)
    return any(_holds_bytes(kind.field(i).type) for i in range(kind.num_fields))


def write_table(table: pa.Table, path: str | os.PathLike[str]) -> None:
    """Writes ``table`` in the format of ``path``'s extension, atomically (:func:`atomic_file`: temp
    file + rename, the replaced file's mode kept, a link written where it points), so a crash never
    leaves a half-written file under the final name."""
    path = Path(path)
    fmt, compression = _format_and_compression(path)
    check_writable(table.schema, path)
    with atomic_file(path) as tmp:
        if fmt == "parquet":
            pq.write_table(table, tmp, compression="zstd")
        else:
            with pa.output_stream(str(tmp), compression=compression) as stream:
                _write_text_format(table, fmt, path, stream)
