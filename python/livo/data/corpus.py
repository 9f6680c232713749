"""A prompt corpus made of several files, read as one table in pieces of bounded size.

A distributed job cannot hand whole files to its workers: one file may be larger than a worker's
memory, and the rows' global order (file after file, in the order the user named them) must not
depend on how the work was split. So the driver cuts the corpus into pieces (:class:`Piece`)
cheaply (:func:`split_pieces`: file sizes and Parquet footers only), the workers survey each piece
(:func:`survey_piece`: its rows and columns), the driver turns the counts into global row offsets
(:func:`with_offsets`) and gives the pieces of a ``.jsonl`` file the types of the whole file
(:func:`with_file_schemas`), and each worker then reads its pieces (:func:`read_piece`) with memory
bounded by the piece. Where the files' columns differ, :func:`merged_schema` and :func:`conform`
give every piece the columns of them all, as one table of the corpus would have them.

Each piece's rows are exactly the rows :func:`livo.data.io.read_prompt_table` gives for that part of
its file: the same line rules for ``.txt`` (``\\n`` or ``\\r\\n``, a leading UTF-8 BOM dropped, no row
after a final newline, blank lines are rows) and the same readers for the other formats.
"""

from __future__ import annotations

import glob
import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from livo.data.io import (
    FORMATS,
    HEAD_BYTES,
    INPUT_SUFFIXES,
    TEXT_COLUMN,
    _is_blank,
    check_json_prompts,
    check_text_head,
    file_compression,
    file_format,
    find_lone_surrogate,
    first_non_string,
    lone_surrogate_message,
    named_read_errors,
    prompt_column_name,
    read_table,
    text_column,
)
from livo.errors import InputError

__all__ = [
    "FORMATS",
    "Piece",
    "conform",
    "count_rows",
    "expand_inputs",
    "merged_schema",
    "read_piece",
    "split_pieces",
    "survey_piece",
    "with_file_schemas",
    "with_offsets",
]

_BOM = b"\xef\xbb\xbf"
_JSON_WHITESPACE = b" \t\r\n"  # a .jsonl line of these only is no row (polars skips it)


@dataclass(frozen=True)
class Piece:
    """One part of one file of the corpus; small and picklable, so it can be sent to a worker.

    ``.txt``/``.jsonl``: the piece owns the lines that *start* in ``[byte_start, byte_end)``, so
    arbitrary byte ranges that tile a file give every line to exactly one piece. ``.parquet``: the
    piece is the row groups ``row_groups``. ``.csv``: the piece is the whole file (a quoted field may
    hold newlines, so a byte offset cannot tell where a row starts), as is a compressed file (a byte
    offset into compressed data is no place to start reading).

    ``first_row`` (global index of the piece's first row in the corpus), ``rows`` and ``file_row``
    (index of that row within its file) are -1 until :func:`with_offsets` fills them. ``file_bytes``
    is the file's size when it was split: a file that grew or shrank since then no longer fits the
    plan (a byte range would miss appended lines), so reading it is an error. ``schema`` (``.jsonl``,
    set by :func:`with_file_schemas`) is the whole file's column types, which the piece is read with.
    """

    path: str
    format: str
    index: int
    byte_start: int
    byte_end: int
    row_groups: tuple[int, ...] = ()
    first_row: int = -1
    rows: int = -1
    file_row: int = -1
    file_bytes: int = -1
    schema: pa.Schema | None = None

    @property
    def whole_file(self) -> bool:
        """True for a piece that is its whole file, read as :func:`livo.data.io.read_table` reads it."""
        return self.format == "csv" or file_compression(self.path) is not None

    def describe(self) -> str:
        """Where the piece is, for error messages: ``FILE rows A–B`` (global, 1-based) once counted."""
        if self.rows > 0 and self.first_row >= 0:
            return f"{self.path} rows {self.first_row + 1:,}–{self.first_row + self.rows:,}"
        if self.rows == 0:
            return f"{self.path} (piece {self.index}, no rows)"
        if self.format == "parquet":
            return f"{self.path} row groups {list(self.row_groups)}"
        if self.whole_file:
            return self.path
        return f"{self.path} bytes {self.byte_start:,}–{self.byte_end:,}"


def expand_inputs(inputs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The prompt files named by ``inputs``, in the corpus's order.

    Each input is a file, a directory (its prompt files by name: not recursive, hidden files and
    other extensions skipped) or a glob pattern (its matches by name). The order of ``inputs`` is
    kept, since it is the corpus's row order. A file reached twice would be read twice, so it is an
    error, as is an input that yields no file.
    """
    files: list[Path] = []
    seen: dict[Path, Path] = {}
    for item in inputs:
        text = os.fspath(item)
        path = Path(text)
        if path.is_dir():
            found = _directory_files(path)
        elif path.exists():
            file_format(path)  # an unsupported extension is an InputError naming the file
            found = [path]
        elif any(char in text for char in "*?["):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                raise InputError(f"{text}: no file matches this pattern")
            found = []
            for match in map(Path, matches):
                if match.is_dir():
                    found.extend(_directory_files(match))
                else:
                    file_format(match)
                    found.append(match)
        else:
            raise InputError(f"{text}: no such file or folder")
        for file in found:
            key = file.resolve()
            if key in seen:
                raise InputError(f"{file}: named twice in the inputs (first as {seen[key]})")
            seen[key] = file
            files.append(file)
    return files


def _directory_files(directory: Path) -> list[Path]:
    files = sorted(
        (entry for entry in directory.iterdir() if not entry.name.startswith(".") and entry.is_file()),
        key=lambda entry: entry.name,
    )
    files = [entry for entry in files if entry.name.lower().endswith(INPUT_SUFFIXES)]
    if not files:
        known = ", ".join(sorted(FORMATS)) + ", compressed .gz/.bz2/.zst"
        raise InputError(f"{directory}: the folder holds no prompt files ({known})")
    return files


def split_pieces(files: Sequence[str | os.PathLike[str]], target_bytes: int = 64 << 20) -> list[Piece]:
    """Cuts ``files`` into pieces of about ``target_bytes`` each, numbered in corpus order.

    Cheap enough for the driver: it reads file sizes, Parquet footers and the first 64 KiB of each
    ``.txt`` and ``.jsonl`` file (checked as :func:`livo.data.io.read_table` checks them: a UTF-16
    file or CR-only line ends are refused here, before any worker reads a piece of it). ``.txt`` and
    ``.jsonl`` are cut at plain byte offsets (the readers find the line starts); Parquet row groups
    are packed up to ``target_bytes`` of uncompressed data, at least one group a piece; a ``.csv``
    file and a compressed one are one piece each. An empty file is one piece of no rows, so every file shows in the plan.
    """
    if target_bytes < 1:
        raise ValueError(f"target_bytes must be at least 1, got {target_bytes}")
    pieces: list[Piece] = []
    for file in files:
        path = str(file)
        fmt = file_format(path)
        try:
            size = os.stat(path).st_size
        except OSError as error:
            raise InputError(f"{path}: cannot be read: {error}") from error
        ranges: list[tuple[int, int, tuple[int, ...]]]
        if fmt == "parquet":
            ranges = [(0, size, groups) for groups in _pack_row_groups(path, target_bytes)]
        elif fmt == "csv" or file_compression(path) is not None:
            ranges = [(0, size, ())]
        elif size == 0 or (fmt == "jsonl" and _is_blank(Path(path))):
            ranges = [(0, 0, ())]  # read_table reads a blank .jsonl as no rows, not as a parse error
        else:
            _check_head(path, fmt)
            ranges = [(start, min(start + target_bytes, size), ()) for start in range(0, size, target_bytes)]
        for start, end, groups in ranges:
            pieces.append(Piece(path, fmt, len(pieces), start, end, groups, file_bytes=size))
    return pieces


def _check_head(path: str, fmt: str) -> None:
    try:
        with open(path, "rb") as handle:
            head = handle.read(HEAD_BYTES)
    except OSError as error:
        raise InputError(f"{path}: cannot be read: {error}") from error
    check_text_head(head, fmt, path)


def _pack_row_groups(path: str, target_bytes: int) -> list[tuple[int, ...]]:
    try:
        with pq.ParquetFile(path) as parquet:
            metadata = parquet.metadata
            sizes = [metadata.row_group(group).total_byte_size for group in range(metadata.num_row_groups)]
    except (OSError, ValueError, pa.ArrowException) as error:
        raise InputError(f"{path}: cannot be read as parquet: {error}") from error
    packs: list[tuple[int, ...]] = []
    current: list[int] = []
    current_bytes = 0
    for group, size in enumerate(sizes):
        if current and current_bytes + size > target_bytes:
            packs.append(tuple(current))
            current, current_bytes = [], 0
        current.append(group)
        current_bytes += size
    packs.append(tuple(current))  # a file without row groups is one piece of none
    return packs


def count_rows(piece: Piece) -> int:
    """The number of rows of ``piece``; meant for a worker. Reads the piece's lines one at a time
    (``.txt``/``.jsonl``), the footer (``.parquet``) or the file (``.csv`` or compressed, a piece of
    its own)."""
    _check_size(piece)
    if piece.format == "parquet":
        return _parquet_footer(piece)[0]
    if piece.whole_file:
        return _read_whole(piece).num_rows
    try:
        if piece.format == "txt":
            return sum(1 for _ in _owned_lines(piece))
        return sum(1 for line in _owned_lines(piece) if line.strip(_JSON_WHITESPACE))
    except OSError as error:
        raise InputError(f"{piece.describe()}: cannot be read: {error}") from error


def _parquet_footer(piece: Piece) -> tuple[int, pa.Schema]:
    """The rows of the piece's row groups and the file's columns, from the footer alone."""
    try:
        with pq.ParquetFile(piece.path) as parquet:
            metadata = parquet.metadata
            return sum(metadata.row_group(group).num_rows for group in piece.row_groups), parquet.schema_arrow
    except (OSError, ValueError, IndexError, pa.ArrowException) as error:
        raise InputError(f"{piece.describe()}: cannot be read as parquet: {error}") from error


def survey_piece(piece: Piece) -> tuple[int, pa.Schema | None]:
    """The number of rows of ``piece`` (:func:`count_rows`) and the columns it holds, with the types
    its rows alone give; meant for a worker. A ``.jsonl`` piece is parsed for them (JSON has no types
    without it); one that does not parse has none here, and reading it fails later, naming its rows.
    A piece without rows has none either."""
    if piece.whole_file or piece.format == "parquet":  # count and columns from one read
        _check_size(piece)
        if piece.whole_file:
            table = _read_whole(piece)
            rows, schema = table.num_rows, table.schema
        else:
            rows, schema = _parquet_footer(piece)
        return rows, schema if rows else None
    rows = count_rows(piece)
    if rows == 0:
        return rows, None
    if piece.format == "txt":
        return rows, pa.schema([(TEXT_COLUMN, pa.large_string())])
    try:
        table = _parse_jsonl(piece, None)
    except InputError:
        return rows, None
    return rows, None if table is None else table.schema


def merged_schema(schemas: Sequence[pa.Schema | None], what: str) -> pa.Schema | None:
    """One table's columns for tables of ``schemas``: every column of any of them, in order of first
    appearance, each with the type one read of them all would give (null and float: float; integers
    and strings: strings), as polars merges them. ``what`` names the tables in the error raised when
    two types have no common one."""
    import polars as pl

    found = [schema for schema in schemas if schema is not None]
    if not found:
        return None
    try:
        return pl.concat([pl.DataFrame(s.empty_table()) for s in found], how="diagonal_relaxed").to_arrow().schema
    except Exception as error:  # polars raises its own exception hierarchy
        if type(error).__module__.startswith("polars"):
            raise InputError(f"{what}: their columns cannot be merged into one table: {error}") from None
        raise


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with ``schema``'s columns, in its order and types: a column the table lacks is null."""
    import polars as pl

    frame = pl.concat([pl.DataFrame(schema.empty_table()), pl.DataFrame(table)], how="diagonal_relaxed")
    return frame.select(schema.names).to_arrow().cast(schema)


def with_file_schemas(pieces: Sequence[Piece], schemas: Sequence[pa.Schema | None]) -> list[Piece]:
    """The pieces, each ``.jsonl`` one with the column types of its whole file: those of its pieces
    (:func:`survey_piece`) merged as one read of the file infers them (a column null in one piece and
    float in another is float; integers and strings are strings; a key first seen in a later piece is a
    column of every piece). Without it each piece had its own types, and one file's output parts
    disagreed with each other and with the file read whole."""
    if len(pieces) != len(schemas):
        raise ValueError(f"{len(pieces)} pieces but {len(schemas)} schemas")
    seen: dict[str, list[pa.Schema | None]] = {}
    for piece, schema in zip(pieces, schemas):
        if piece.format == "jsonl":
            seen.setdefault(piece.path, []).append(schema)
    merged = {path: merged_schema(found, f"{path} (its pieces)") for path, found in seen.items()}
    return [replace(piece, schema=merged.get(piece.path)) for piece in pieces]


def with_offsets(pieces: Sequence[Piece], counts: Sequence[int]) -> list[Piece]:
    """The pieces with ``rows`` set from ``counts`` and ``first_row``/``file_row`` set cumulatively,
    in the order given (the corpus's order, as :func:`split_pieces` returns it)."""
    if len(pieces) != len(counts):
        raise ValueError(f"{len(pieces)} pieces but {len(counts)} counts")
    result: list[Piece] = []
    total = 0
    per_file: dict[str, int] = {}
    for piece, count in zip(pieces, counts):
        if count < 0:
            raise ValueError(f"{piece.describe()}: negative row count {count}")
        file_row = per_file.get(piece.path, 0)
        result.append(replace(piece, first_row=total, rows=count, file_row=file_row))
        total += count
        per_file[piece.path] = file_row + count
    return result


def read_piece(piece: Piece, column: str | None = None) -> tuple[pa.Table, pa.Array]:
    """The piece's rows and its prompt column (the rules of :func:`livo.data.io.text_column`).

    Errors name the file and the piece's global rows, so a failure in one of thousands of tasks
    points at the data. If the piece was counted and now holds another number of rows, the file
    changed since the plan was made, and the global row offsets are wrong: that is an error too.
    """
    _check_size(piece)
    try:
        if piece.format == "parquet":
            table = _read_parquet(piece)
        elif piece.whole_file:
            table = _read_whole(piece)
            if piece.format == "jsonl":
                check_json_prompts(piece.path, table, prompt_column_name(table, column))
        elif piece.format == "txt":
            table = pa.table({TEXT_COLUMN: pa.array(_read_text(piece), pa.large_string())})
        else:
            table = _read_jsonl(piece, column)
    except OSError as error:
        raise InputError(f"{piece.describe()}: cannot be read: {error}") from error
    if piece.rows >= 0 and table.num_rows != piece.rows:
        raise InputError(
            f"{piece.describe()}: the file changed while being read ({table.num_rows:,} rows now, "
            f"{piece.rows:,} when counted)"
        )
    return table, text_column(table, column, piece.describe())


def _check_size(piece: Piece) -> None:
    try:
        size = os.stat(piece.path).st_size
    except OSError as error:
        raise InputError(f"{piece.describe()}: cannot be read: {error}") from error
    if piece.file_bytes >= 0 and size != piece.file_bytes:
        raise InputError(
            f"{piece.describe()}: the file changed while being read ({size:,} bytes now, "
            f"{piece.file_bytes:,} when the corpus was split)"
        )


def _owned_lines(piece: Piece) -> Iterator[bytes]:
    """The raw lines (newline included) that start in the piece's byte range, read one at a time:
    the range plus the rest of its last line, and the line that straddles ``byte_start``."""
    with open(piece.path, "rb") as handle:
        position = _first_line_start(handle, piece)
        handle.seek(position)
        while position < piece.byte_end:
            line = handle.readline()
            if not line:
                return
            yield line
            position += len(line)


def _first_line_start(handle: BinaryIO, piece: Piece) -> int:
    # The whole-file readers drop a leading BOM (.txt by its line rules, .jsonl before polars, which
    # refuses one), so the file's first line starts after it.
    start = 0
    if piece.format in ("txt", "jsonl") and handle.read(len(_BOM)) == _BOM:
        start = len(_BOM)
    if piece.byte_start <= start:
        return start
    handle.seek(piece.byte_start - 1)
    return piece.byte_start - 1 + len(handle.readline())  # a line starts after the previous newline


def _read_text(piece: Piece) -> list[str]:
    """The piece's lines as :func:`livo._native.read_text_lines` reads them (``\\r\\n`` or ``\\n``)."""
    lines: list[str] = []
    for number, raw in enumerate(_owned_lines(piece)):
        raw = raw.removesuffix(b"\n").removesuffix(b"\r")
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError as error:
            where = f"line {piece.file_row + number + 1}" if piece.file_row >= 0 else f"row {number + 1} of the piece"
            raise InputError(
                f"{piece.describe()}: {where} is not valid UTF-8 (byte offset {error.start} in the line)"
            ) from None
    return lines


def _read_jsonl(piece: Piece, column: str | None) -> pa.Table:
    data = b"".join(_owned_lines(piece))
    table = _parse_jsonl(piece, piece.schema, data)
    if table is None:
        return pa.table({TEXT_COLUMN: pa.array([], pa.large_string())})
    found = first_non_string(data, prompt_column_name(table, column))
    if found is not None:
        raise InputError(f"{piece.path} row {piece.first_row + found.row + 1:,}: {found.problem}")
    return _prompts_typed(table, column)


def _parse_jsonl(piece: Piece, schema: pa.Schema | None, data: bytes | None = None) -> pa.Table | None:
    """The piece's rows (``data``: its lines, when already read), with ``schema``'s types, or (None)
    those every row of the piece gives, as read_table infers them for a whole file; None for a piece
    of blank lines."""
    if data is None:
        data = b"".join(_owned_lines(piece))
    if not data.strip(_JSON_WHITESPACE):
        return None
    surrogate = find_lone_surrogate(data)
    if surrogate is not None:  # polars would read it as NUL, making two prompts one
        offset, escape = surrogate
        raise InputError(lone_surrogate_message(piece.path, _line_number(piece, offset), escape))
    with named_read_errors(piece.describe(), "jsonl"):
        import polars as pl

        if schema is None:
            frame = pl.read_ndjson(io.BytesIO(data), infer_schema_length=None)
        else:
            frame = pl.read_ndjson(io.BytesIO(data), schema=pl.DataFrame(schema.empty_table()).schema)
        return frame.to_arrow()


def _line_number(piece: Piece, offset: int) -> int:
    """The file's line number (1-based) of byte ``offset`` of the piece's lines; for error messages
    only, as it reads the file up to there."""
    with open(piece.path, "rb") as handle:
        start = _first_line_start(handle, piece)
        handle.seek(0)
        newlines, remaining = 0, start
        while remaining > 0 and (block := handle.read(min(remaining, 1 << 23))):
            newlines += block.count(b"\n")
            remaining -= len(block)
        handle.seek(start)
        return newlines + handle.read(offset).count(b"\n") + 1


def _prompts_typed(table: pa.Table, column: str | None) -> pa.Table:
    # A piece whose prompts are all null has a null-typed column where the whole file has strings.
    name = prompt_column_name(table, column)
    if name in table.column_names and pa.types.is_null(table.schema.field(name).type):
        index = table.column_names.index(name)
        table = table.set_column(index, name, table.column(name).cast(pa.large_string()))
    return table


def _read_parquet(piece: Piece) -> pa.Table:
    try:
        with pq.ParquetFile(piece.path) as parquet:
            return parquet.read_row_groups(list(piece.row_groups))
    except (OSError, ValueError, IndexError, pa.ArrowException) as error:
        raise InputError(f"{piece.describe()}: cannot be read as parquet: {error}") from error


def _read_whole(piece: Piece) -> pa.Table:
    try:
        return read_table(piece.path)
    except (InputError, OSError) as error:
        message = str(error).removeprefix(f"{piece.path}: ")
        raise InputError(f"{piece.describe()}: {message}") from error
