"""A corpus of several prompt files read in pieces: the pieces together are exactly the files read
whole, in the order of the inputs, whatever the piece size; errors name the file and the rows."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from livo import _native
from livo.data.corpus import (
    Piece,
    conform,
    count_rows,
    expand_inputs,
    merged_schema,
    read_piece,
    split_pieces,
    survey_piece,
    with_file_schemas,
    with_offsets,
)
from livo.data.io import read_prompt_table, read_table, write_table
from livo.errors import InputError, InvalidUtf8Error

TARGETS = [1, 2, 7, 100, 1 << 20]


def plan(files: list[Path], target_bytes: int) -> list[Piece]:
    """What a distributed job does: split in the driver, survey in the workers, offsets and each
    file's column types in the driver."""
    pieces = split_pieces(files, target_bytes)
    surveys = [survey_piece(piece) for piece in pieces]
    counted = with_offsets(pieces, [rows for rows, _ in surveys])
    return with_file_schemas(counted, [schema for _, schema in surveys])


def read_all(pieces: list[Piece], column: str | None = None) -> tuple[list[dict[str, object]], list[str | None]]:
    rows: list[dict[str, object]] = []
    prompts: list[str | None] = []
    for piece in pieces:
        table, prompt = read_piece(piece, column)
        assert table.num_rows == len(prompt) == piece.rows
        rows.extend(table.to_pylist())
        prompts.extend(prompt.to_pylist())
    return rows, prompts


def read_whole(files: list[Path], column: str | None = None) -> tuple[list[dict[str, object]], list[str | None]]:
    rows: list[dict[str, object]] = []
    prompts: list[str | None] = []
    for file in files:
        table, prompt = read_prompt_table(file, column)
        rows.extend(table.to_pylist())
        prompts.extend(prompt.to_pylist())
    return rows, prompts


def assert_consistent(pieces: list[Piece]) -> None:
    """Indices in order, rows contiguous, byte ranges of a text file tiling it."""
    total = 0
    for number, piece in enumerate(pieces):
        assert piece.index == number
        assert piece.first_row == total
        total += piece.rows
    for before, after in zip(pieces, pieces[1:]):
        if before.path == after.path:
            assert after.file_row == before.file_row + before.rows
            if before.format in ("txt", "jsonl"):
                assert after.byte_start == before.byte_end
        else:
            assert after.file_row == 0


TEXT_FILES = {
    "mixed": b"a doctor\r\na nurse\n\nlast",
    "trailing": b"one\ntwo\r\n\r\n\n",
    "bom": b"\xef\xbb\xbfalpha\nbeta\n",
    "bom_only": b"\xef\xbb\xbf",
    "bom_newline": b"\xef\xbb\xbf\nx",
    "unicode": "café ☕\n日本語のプロンプト\n🙂 emoji\n".encode(),
    "long": b"short\n" + b"x" * 300 + b"\r\n" + "é".encode() * 150 + b"\nend",
    "blank_lines": b"\n\n\nfoo\n\n",
    "newline_only": b"\n",
    "cr_at_end": b"a\r",
    "empty": b"",
}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", sorted(TEXT_FILES))
def test_txt_pieces_equal_the_whole_file(tmp_path: Path, name: str, target: int) -> None:
    path = tmp_path / f"{name}.txt"
    path.write_bytes(TEXT_FILES[name])
    pieces = plan([path], target)
    assert_consistent(pieces)
    whole = read_whole([path])
    assert read_all(pieces) == whole
    assert sum(piece.rows for piece in pieces) == len(whole[1])


JSONL_ROWS = [
    {"prompt": "a cat", "n": 1, "tags": ["x"]},
    {"prompt": 'naïve café ☕ "quoted"\nwith newline', "n": 2, "tags": []},
    {"prompt": None, "n": 3, "tags": ["y", "z"]},
    {"prompt": "y" * 250, "n": 4, "tags": []},
    {"prompt": "日本語", "n": 5, "tags": ["w"]},
]


def jsonl_bytes(newline: str, blank: str, trailing: bool) -> bytes:
    lines = [json.dumps(row, ensure_ascii=False) for row in JSONL_ROWS]
    lines.insert(2, blank)  # a whitespace-only line is no row
    text = newline.join(lines) + (newline if trailing else "")
    return text.encode()


JSONL_FILES = {
    "lf": jsonl_bytes("\n", "", True),
    "crlf": jsonl_bytes("\r\n", "  \t", True),
    "no_trailing_newline": jsonl_bytes("\n", " ", False),
    "blank": b"\n  \n\r\n",
    "empty": b"",
    "bom": b"\xef\xbb\xbf" + jsonl_bytes("\r\n", "", True),  # the whole-file reader drops it
}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", sorted(JSONL_FILES))
def test_jsonl_pieces_equal_the_whole_file(tmp_path: Path, name: str, target: int) -> None:
    path = tmp_path / f"{name}.jsonl"
    path.write_bytes(JSONL_FILES[name])
    pieces = plan([path], target)
    assert_consistent(pieces)
    assert read_all(pieces) == read_whole([path])


def test_jsonl_piece_of_null_prompts_is_a_string_column(tmp_path: Path) -> None:
    """The whole file types the prompt column from its strings; a piece with only nulls must too."""
    path = tmp_path / "nulls.jsonl"
    path.write_text('{"prompt": null}\n{"prompt": null}\n{"prompt": "a"}\n')
    pieces = plan([path], 1)
    _, prompt = read_piece(pieces[0])
    assert prompt.type == pa.large_string() and prompt.to_pylist() == [None]


@pytest.mark.parametrize("target", [200, 1000, 1 << 20])
def test_jsonl_pieces_have_the_whole_file_s_column_types(tmp_path: Path, target: int) -> None:
    """Column types that only the whole file settles: null early then float, integers then strings, a
    key first seen late. Every piece is read with the file's types, so the pieces agree with each
    other and with the file read whole."""
    path = tmp_path / "mixed.jsonl"
    rows = [
        {"prompt": f"prompt {i}", "score": None if i < 20 else i / 2, "tag": i if i < 30 else f"t{i}"}
        | ({"late": True} if i >= 35 else {})
        for i in range(40)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    pieces = plan([path], target)
    assert_consistent(pieces)
    schemas = {read_piece(piece)[0].schema for piece in pieces}
    whole, _ = read_prompt_table(path)
    assert schemas == {whole.schema}
    assert whole.schema.field("score").type == pa.float64() and whole.schema.field("tag").type == pa.large_string()
    assert read_all(pieces) == read_whole([path])


def test_files_with_other_columns_merge_into_one_table_s_columns(tmp_path: Path) -> None:
    """What a distributed job writes for a corpus of mixed files: every piece with all their columns."""
    (tmp_path / "a.txt").write_text("a cat\n")
    pq.write_table(pa.table({"prompt": ["a dog"], "source": ["web"], "n": [1]}), tmp_path / "b.parquet")
    (tmp_path / "c.jsonl").write_text(json.dumps({"prompt": "a fox", "n": "seven"}) + "\n")
    pieces = split_pieces([tmp_path / "a.txt", tmp_path / "b.parquet", tmp_path / "c.jsonl"], 1 << 20)
    schema = merged_schema([survey_piece(piece)[1] for piece in pieces], "the inputs")
    assert schema is not None and schema.names == ["prompt", "source", "n"]
    assert schema.field("n").type == pa.large_string()  # integers in one file, strings in another
    tables = [conform(read_piece(piece)[0], schema) for piece in with_offsets(pieces, [1, 1, 1])]
    assert {table.schema for table in tables} == {schema}
    assert pa.concat_tables(tables).to_pylist() == [
        {"prompt": "a cat", "source": None, "n": None},
        {"prompt": "a dog", "source": "web", "n": "1"},
        {"prompt": "a fox", "source": None, "n": "seven"},
    ]
    lists = [pa.schema([("x", pa.list_(pa.int64()))]), pa.schema([("x", pa.int64())])]
    with pytest.raises(InputError, match="the inputs: their columns cannot be merged into one table"):
        merged_schema(lists, "the inputs")


CODECS = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd"}


def compress(path: Path, extension: str) -> Path:
    packed = path.with_name(path.name + extension)
    with pa.output_stream(packed, compression=CODECS[extension]) as stream:
        stream.write(path.read_bytes())
    return packed


@pytest.mark.parametrize("extension", sorted(CODECS))
@pytest.mark.parametrize("name", sorted(TEXT_FILES))
def test_a_compressed_txt_file_reads_as_its_uncompressed_twin(tmp_path: Path, name: str, extension: str) -> None:
    path = tmp_path / f"{name}.txt"
    path.write_bytes(TEXT_FILES[name])
    packed = compress(path, extension)
    lines = _native.read_text_lines(str(path))
    assert read_prompt_table(packed)[1].to_pylist() == lines
    pieces = plan([packed], 1)
    assert len(pieces) == 1 and pieces[0].rows == len(lines)  # no byte offset to cut compressed data at
    assert read_all(pieces) == read_whole([path])


@pytest.mark.parametrize("extension", sorted(CODECS))
def test_compressed_jsonl_and_csv_read_as_their_uncompressed_twins(tmp_path: Path, extension: str) -> None:
    jsonl, csv = tmp_path / "p.jsonl", tmp_path / "p.csv"
    rows = [{"prompt": "a, comma", "score": None}, {"prompt": 'multi\nline "quoted"', "score": 1.5}]
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows))
    pl.DataFrame(rows).write_csv(csv)
    for path in (jsonl, csv):
        packed = compress(path, extension)
        assert read_prompt_table(packed)[0].equals(read_prompt_table(path)[0])
        assert read_all(plan([packed], 1)) == read_whole([path])
    # A folder's compressed files are prompt files too, in name order.
    names = [p.name for p in expand_inputs([tmp_path])]
    assert names == ["p.csv", f"p.csv{extension}", "p.jsonl", f"p.jsonl{extension}"]
    blank = tmp_path / "blank.jsonl"
    blank.write_text("\n")
    assert read_prompt_table(compress(blank, extension))[0].num_rows == 0  # as the uncompressed file


@pytest.mark.parametrize("name", ["out.jsonl.gz", "out.csv.zst", "out.txt.bz2", "out.ndjson"])
def test_written_tables_read_back_compressed_or_not(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    if ".txt" in name:
        table = pa.table({"prompt": pa.array(["a doctor", "", "ünï ☕"], pa.large_string())})
    else:
        table = pa.table({"prompt": ["a doctor", "a kite"], "n": [1, 2]})
    write_table(table, path)
    assert read_table(path).to_pylist() == table.to_pylist()


def test_csv_output_writes_nested_columns_as_json_text(tmp_path: Path) -> None:
    path = tmp_path / "selected.csv"
    table = pa.table(
        {
            "prompt": ["a bloody nurse", "a kite"],
            "value_ids": [["no-blood", "gender-equality"], []],
            "value_scores": [[0.9, 0.5], None],
            "reasons": [[{"stage": "keyword", "term": 'say "bloody"'}], []],
        }
    )
    write_table(table, path)
    written = pl.read_csv(path)
    assert written["prompt"].to_list() == ["a bloody nurse", "a kite"]
    for column in ("value_ids", "value_scores", "reasons"):
        cells = written[column].to_list()
        assert [None if cell is None else json.loads(cell) for cell in cells] == table.column(column).to_pylist()


def test_compressed_input_mistakes_are_named(tmp_path: Path) -> None:
    import gzip

    truncated = tmp_path / "cut.jsonl.gz"
    truncated.write_bytes(gzip.compress(b'{"prompt": "x"}\n' * 100)[:-12])
    with pytest.raises(InputError, match=f"^{re.escape(str(truncated))}: cannot be read as jsonl \\(gzip\\)"):
        read_prompt_table(truncated)
    with pytest.raises(InputError, match=re.escape(str(truncated))):
        read_all(plan([truncated], 1 << 20))
    broken = tmp_path / "broken.txt.gz"
    broken.write_bytes(gzip.compress(b"fine\nbroken \xc3\x28 text\n"))
    with pytest.raises(InvalidUtf8Error, match=f"^{re.escape(str(broken))}: line 2 is not valid UTF-8"):
        read_prompt_table(broken)
    parquet = tmp_path / "p.parquet.gz"
    parquet.write_bytes(b"")
    with pytest.raises(InputError, match="a compressed Parquet file cannot be read by row group"):
        expand_inputs([parquet])
    archive = tmp_path / "prompts.tar.gz"
    archive.write_bytes(b"")
    with pytest.raises(InputError, match=f"^{re.escape(str(archive))}: unsupported file extension '.tar.gz'"):
        expand_inputs([archive])


@pytest.mark.parametrize("target", TARGETS)
def test_csv_is_one_piece_a_file(tmp_path: Path, target: int) -> None:
    path = tmp_path / "prompts.csv"
    pl.DataFrame({"prompt": ["a, comma", 'multi\nline "quoted"', "ünï"], "n": [1, 2, 3]}).write_csv(path)
    pieces = plan([path], target)
    assert len(pieces) == 1 and pieces[0].rows == 3
    assert read_all(pieces) == read_whole([path])


def test_parquet_pieces_pack_row_groups(tmp_path: Path) -> None:
    path = tmp_path / "prompts.parquet"
    table = pa.table({"prompt": [f"prompt {i}" for i in range(10)], "n": list(range(10))})
    pq.write_table(table, path, row_group_size=3)  # groups of 3, 3, 3, 1 rows
    metadata = pq.ParquetFile(path).metadata
    sizes = [metadata.row_group(group).total_byte_size for group in range(metadata.num_row_groups)]
    assert len(sizes) == 4

    one_each = plan([path], 1)
    assert [piece.row_groups for piece in one_each] == [(0,), (1,), (2,), (3,)]
    assert [piece.rows for piece in one_each] == [3, 3, 3, 1]
    assert [piece.row_groups for piece in plan([path], 1 << 20)] == [(0, 1, 2, 3)]
    pairs = plan([path], sizes[0] + sizes[1])
    assert [piece.row_groups for piece in pairs] == [(0, 1), (2, 3)]
    for pieces in (one_each, pairs):
        assert_consistent(pieces)
        assert read_all(pieces) == read_whole([path])
        assert pa.concat_tables(read_piece(piece)[0] for piece in pieces).equals(pq.read_table(path))


def test_empty_parquet_is_one_piece_of_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"prompt": pa.array([], pa.string())}), path)
    pieces = plan([path], 1)
    assert len(pieces) == 1 and pieces[0].rows == 0
    assert read_all(pieces) == ([], [])


def test_several_files_are_one_corpus_in_input_order(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "b.jsonl").write_text('{"prompt": "b1"}\n{"prompt": "b2"}\n')
    (folder / "a.txt").write_text("a1\na2\na3\n")
    (folder / ".hidden.txt").write_text("hidden\n")
    (folder / "notes.md").write_text("not a prompt file\n")
    (folder / "sub").mkdir()
    (folder / "sub" / "deep.txt").write_text("not recursive\n")
    shards = tmp_path / "shards"
    shards.mkdir()
    for number in (2, 1):
        table = pa.table({"prompt": [f"p{number}-{i}" for i in range(7)]})
        pq.write_table(table, shards / f"part-{number}.parquet", row_group_size=2)
    csv = tmp_path / "extra.csv"
    pl.DataFrame({"prompt": ["c1", "c2"]}).write_csv(csv)
    first = tmp_path / "first.txt"
    first.write_text("f1\nf2\n")

    files = expand_inputs([first, str(shards / "*.parquet"), folder, str(csv)])
    assert files == [
        first,
        shards / "part-1.parquet",
        shards / "part-2.parquet",
        folder / "a.txt",
        folder / "b.jsonl",
        csv,
    ]
    whole = read_whole(files)
    assert whole[1][:4] == ["f1", "f2", "p1-0", "p1-1"]
    for target in (1, 5, 40, 1 << 20):
        pieces = plan(files, target)
        assert_consistent(pieces)
        assert [piece.path for piece in pieces] == sorted(
            (piece.path for piece in pieces), key=lambda path: files.index(Path(path))
        )
        assert sum(piece.rows for piece in pieces) == len(whole[1]) == 2 + 14 + 3 + 2 + 2
        assert read_all(pieces) == whole
    # Counting needs no offsets: a worker counts a fresh piece the same.
    fresh = split_pieces(files, 5)
    assert [count_rows(piece) for piece in fresh] == [piece.rows for piece in plan(files, 5)]


def test_describe_names_the_global_rows(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("x\n" * 15)
    pieces = with_offsets(split_pieces([path], 10), [100_000, 100_000, 100_000])  # counts as if huge
    assert pieces[1].describe() == f"{path} rows 100,001–200,000"


def test_broken_jsonl_line_names_the_file_and_rows(tmp_path: Path) -> None:
    path = tmp_path / "b.jsonl"
    lines = [json.dumps({"prompt": f"p{i}"}) for i in range(30)]
    lines[14] = '{"prompt": "broken'
    path.write_text("\n".join(lines) + "\n")
    size = len(lines[0]) + 1  # every line but the broken one has this length
    pieces = plan([path], 10 * size)
    assert [piece.rows for piece in pieces[:2]] == [10, 10]
    read_piece(pieces[0])
    with pytest.raises(InputError) as caught:
        read_piece(pieces[1])
    message = str(caught.value)
    assert message.startswith(f"{path} rows 11–20: cannot be read as jsonl")
    with pytest.raises(InputError, match=str(path)):
        read_prompt_table(path)


def test_invalid_utf8_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"".join(f"line {i}\n".encode() for i in range(6)) + b"bad \xff byte\nok\n")
    with pytest.raises(ValueError, match="line 7 is not valid UTF-8"):
        _native.read_text_lines(str(path))  # the whole-file reader's line number
    pieces = plan([path], 20)
    bad = next(piece for piece in pieces if piece.file_row <= 6 < piece.file_row + piece.rows)
    with pytest.raises(InputError) as caught:
        read_piece(bad)
    message = str(caught.value)
    assert message.startswith(f"{bad.describe()}: line 7 is not valid UTF-8 (byte offset 4 in the line)")
    assert str(path) in message
    assert [read_piece(piece)[1].to_pylist() for piece in pieces if piece is not bad]  # the rest reads


@pytest.mark.parametrize("target", [1, 25, 1 << 20])
def test_a_lone_surrogate_escape_is_refused_in_pieces_as_whole(tmp_path: Path, target: int) -> None:
    # polars reads "\ud800" as NUL, so "x \ud800 y" and "x \udbff y" were one prompt.
    path = tmp_path / "cut.jsonl"
    lines = ["", *(json.dumps({"prompt": f"prompt {i}"}) for i in range(8))]  # a blank first line
    lines[6] = '{"prompt": "x \\ud800 y"}'
    path.write_text("\n".join(lines) + "\n")
    expected = f"{path}: line 7: \\ud800 is half of a UTF-16 surrogate pair"
    with pytest.raises(InputError, match=re.escape(expected)):
        read_prompt_table(path)
    pieces = plan([path], target)
    with pytest.raises(InputError, match=re.escape(expected)):
        read_all(pieces)
    path.write_text("\n".join([*lines[:6], '{"prompt": "x \\ud83d\\ude00 y"}', *lines[7:]]) + "\n")
    assert read_all(plan([path], target))[1][5] == "x \N{GRINNING FACE} y"  # a whole pair is a character


@pytest.mark.parametrize(
    ("name", "data", "problem"),
    [
        ("u16.txt", "one prompt\nanother\n".encode("utf-16-le"), "UTF-16 without a byte-order mark"),
        ("bom.jsonl", b"\xff\xfe" + '{"prompt": "a"}\n'.encode("utf-16-le"), "UTF-16 byte-order mark"),
        ("mac.jsonl", b'{"prompt": "a"}\r{"prompt": "b"}\r', "CR alone"),
    ],
    ids=["utf16-txt", "utf16-bom-jsonl", "cr-jsonl"],
)
def test_a_file_a_whole_read_refuses_is_refused_when_split(
    tmp_path: Path, name: str, data: bytes, problem: str
) -> None:
    # The UTF-16 .txt became prompts of letters and NULs with --ray, the others a parser's message.
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(InputError, match=re.escape(f"{path}: ")) as whole:
        read_table(path)
    assert problem in str(whole.value)
    with pytest.raises(InputError) as split:
        split_pieces([path], 4)
    assert str(split.value) == str(whole.value)


def test_truncated_parquet_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cut.parquet"
    pq.write_table(pa.table({"prompt": [f"p{i}" for i in range(100)]}), path, row_group_size=10)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(InputError, match=f"^{re.escape(str(path))}: cannot be read as parquet"):
        split_pieces([path])


def test_corrupt_parquet_page_names_the_file_and_rows(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.parquet"
    values = [os.urandom(40).hex() for _ in range(200)]
    pq.write_table(pa.table({"prompt": values}), path, row_group_size=100, compression="none")
    pieces = plan([path], 1)
    data = bytearray(path.read_bytes())
    middle = data.index(values[150].encode())  # inside the second row group's data page
    data[middle - 60 : middle + 60] = bytes(120)
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=f"^{re.escape(str(path))} rows 101–200: cannot be read as parquet"):
        read_piece(pieces[1])


def test_a_file_changed_since_counting_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "moving.txt"
    path.write_text("a\nb\nc\n")
    pieces = plan([path], 1 << 20)
    path.write_text("a\nb\nc\nd\n")  # grown: the byte range alone would not see the new line
    with pytest.raises(InputError, match=f"^{re.escape(str(path))} rows 1–3: the file changed while being read"):
        read_piece(pieces[0])
    with pytest.raises(InputError, match="changed while being read"):
        count_rows(pieces[0])
    path.write_text("abcd\n\n")  # same size, other rows
    with pytest.raises(InputError, match="the file changed while being read \\(2 rows now, 3 when counted\\)"):
        read_piece(pieces[0])


def test_input_mistakes_name_the_input(tmp_path: Path) -> None:
    good = tmp_path / "good.txt"
    good.write_text("x\n")
    with pytest.raises(InputError, match=f"^{re.escape(str(tmp_path / 'missing.txt'))}: no such file"):
        expand_inputs([tmp_path / "missing.txt"])
    with pytest.raises(InputError, match=f"^{re.escape(str(tmp_path / 'nothing-*.jsonl'))}: no file matches"):
        expand_inputs([str(tmp_path / "nothing-*.jsonl")])
    odd = tmp_path / "prompts.md"
    odd.write_text("x\n")
    with pytest.raises(InputError, match=f"^{re.escape(str(odd))}: unsupported file extension"):
        expand_inputs([odd])
    with pytest.raises(InputError, match=f"^{re.escape(str(odd))}: unsupported file extension"):
        expand_inputs([str(tmp_path / "*")])  # a pattern's matches must be prompt files
    with pytest.raises(InputError, match=f"^{re.escape(str(good))}: named twice"):
        expand_inputs([good, tmp_path / "." / "good.txt"])
    with pytest.raises(InputError, match=f"^{re.escape(str(good))}: named twice"):
        expand_inputs([good, tmp_path])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=f"^{re.escape(str(empty))}: the folder holds no prompt files"):
        expand_inputs([empty])
    with pytest.raises(InputError, match=f"^{re.escape(str(odd))}: unsupported file extension"):
        split_pieces([odd])


def _bytes_read() -> int:
    """Bytes this process has read through read() calls so far (Linux)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


@pytest.mark.parametrize("fmt", ["txt", "jsonl"])
def test_a_middle_piece_reads_only_its_range(tmp_path: Path, fmt: str) -> None:
    """A piece of a large file reads its bytes and a line around them, not the file: the file's
    last line is not even valid, and the bytes the process reads stay near the piece's size."""
    path = tmp_path / f"big.{fmt}"
    count = 200_000
    if fmt == "txt":
        body = "".join(f"prompt number {i:07d}\n" for i in range(count)).encode() + b"bad \xff\n"
    else:
        body = "".join(json.dumps({"prompt": f"prompt number {i:07d}"}) + "\n" for i in range(count)).encode()
        body += b'{"broken\n'
    path.write_bytes(body)
    target = 64 << 10
    pieces = split_pieces([path], target)
    assert len(pieces) > 20 and path.stat().st_size > 3 << 20
    middle = pieces[len(pieces) // 2]
    count_rows(middle)  # warm: first calls import modules
    read_piece(middle)
    if Path("/proc/self/io").exists():
        before = _bytes_read()
        rows = count_rows(middle)
        _, prompt = read_piece(with_offsets([middle], [rows])[0])
        assert _bytes_read() - before < 2 * (target + (256 << 10))
    else:
        rows = count_rows(middle)
        _, prompt = read_piece(middle)
    values = prompt.to_pylist()
    assert len(values) == rows > 1000
    first = int(values[0].rsplit(" ", 1)[1])
    assert values == [f"prompt number {i:07d}" for i in range(first, first + rows)]
    assert 0 < first < count - rows
