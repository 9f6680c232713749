"""``livo shards`` on bad input: a damaged file, a repeated record id, a broken manifest or a flag out
of range is one error naming the input and the problem (exit 2, no traceback), and a failed write
leaves no dataset behind that was not there before."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from livo.cli import main
from livo.data.shards import Manifest, ShardConfig, ShardWriter, shard_stats
from livo.errors import InputError

SMALL_SHARDS = ["--split", "train=0.5", "--split", "val=0.5", "--target-size", "1KiB", "--row-group-size", "512"]


def rows(start: int, stop: int, **extra: list[object]) -> pa.Table:
    return pa.table(
        {
            "record_id": [f"r{i}" for i in range(start, stop)],
            "cluster_id": list(range(start, stop)),
            "value_id": [f"value-{i % 3}" for i in range(start, stop)],
            "category": [f"kind-{i % 2}" for i in range(start, stop)],
            **extra,
        }
    )


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Exit status and stderr of a ``livo`` command (argparse's usage errors included)."""
    capsys.readouterr()
    try:
        code = main(args)
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.fixture
def dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A dataset of 200 rows in several shards of each split, written by the command."""
    source = tmp_path / "rows.parquet"
    pq.write_table(rows(0, 200), source)
    assert main(["shards", "write", str(source), "-o", str(tmp_path / "ds"), *SMALL_SHARDS]) == 0
    assert len(Manifest.load(tmp_path / "ds").shards) >= 4
    return tmp_path / "ds"


def test_a_truncated_parquet_input_is_named_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good, truncated = tmp_path / "good.parquet", tmp_path / "trunc.parquet"
    pq.write_table(rows(0, 100), good)
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    code, err = run(["shards", "write", str(truncated), "-o", str(tmp_path / "ds")], capsys)
    assert code == 2
    assert f"{truncated}: cannot be read as parquet" in err
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize("damage", ["truncated", "footer"])
def test_stats_names_a_damaged_shard(
    damage: str, dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shard = dataset / Manifest.load(dataset).shards[0].name
    data = shard.read_bytes()
    if damage == "truncated":
        shard.write_bytes(data[: len(data) // 2])
    else:  # same size, unreadable footer
        shard.write_bytes(data[:-8] + b"\xff" * 8)
    code, err = run(["shards", "stats", str(dataset)], capsys)
    assert code == 2
    assert str(shard) in err and "livo shards verify" in err
    with pytest.raises(InputError, match=shard.name):
        shard_stats(dataset)


def test_record_ids_repeated_in_one_input_are_refused_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "same.jsonl"
    source.write_text("".join(json.dumps({"record_id": "same", "cluster_id": i}) + "\n" for i in range(10)))
    code, err = run(["shards", "write", str(source), "-o", str(tmp_path / "ds")], capsys)
    assert code == 2
    assert f"{source}: 1 record id(s)" in err and "'same' (10 rows)" in err and "--record-id" in err
    assert not (tmp_path / "ds").exists()


def test_record_ids_repeated_across_inputs_are_refused_and_name_both(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "first.parquet", tmp_path / "second.parquet"
    pq.write_table(rows(0, 50), first)
    pq.write_table(rows(40, 60), second)
    code, err = run(["shards", "write", str(first), str(second), "-o", str(tmp_path / "ds")], capsys)
    assert code == 2
    assert f"{second}: 10 record id(s)" in err and f"also in {first}" in err and "'r40'" in err
    assert not (tmp_path / "ds").exists()


def test_ids_the_dataset_holds_are_still_skipped_on_append(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "more.parquet"
    pq.write_table(rows(150, 250), source)
    capsys.readouterr()
    assert main(["shards", "write", str(source), "-o", str(dataset), "--append", *SMALL_SHARDS]) == 0
    assert "wrote 50 new, skipped 50 already present (total 250; 200 before)" in capsys.readouterr().out


@pytest.mark.parametrize("problem", ["no record id column", "other columns"])
def test_a_write_failing_on_its_second_input_leaves_no_new_folder(
    problem: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "first.parquet", tmp_path / "second.parquet"
    pq.write_table(rows(0, 20), first)
    if problem == "no record id column":
        pq.write_table(rows(20, 40).drop_columns(["record_id"]), second)
    else:  # found by the writer, once the first input is written
        pq.write_table(rows(20, 40, extra=list(range(20))), second)
    code, err = run(["shards", "write", str(first), str(second), "-o", str(tmp_path / "ds")], capsys)
    assert code == 2 and f"{second}:" in err
    assert not (tmp_path / "ds").exists()


def test_a_failing_append_leaves_the_dataset_as_it_was(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "first.parquet", tmp_path / "second.parquet"
    pq.write_table(rows(300, 320), first)
    pq.write_table(rows(320, 340, extra=list(range(20))), second)
    before = snapshot(dataset)
    splits = SMALL_SHARDS[:4]  # the default shard size: the first input's rows fill no shard
    code, err = run(["shards", "write", str(first), str(second), "-o", str(dataset), "--append", *splits], capsys)
    assert code == 2 and f"{second}:" in err
    assert snapshot(dataset) == before


def test_a_writer_left_by_an_error_after_a_good_write_leaves_no_new_dataset(tmp_path: Path) -> None:
    config = ShardConfig(splits={"train": 1.0})
    with pytest.raises(RuntimeError, match="producer failed"):
        with ShardWriter(tmp_path / "ds", config) as writer:
            writer.write(rows(0, 10))
            raise RuntimeError("producer failed")
    assert not (tmp_path / "ds").exists()


MANIFEST_DAMAGE = {
    "rows not a number": (lambda m: m["shards"][0].update(rows="many"), "'shards[0].rows' must be an integer"),
    "newer format": (lambda m: m.update(format_version=99), "'format_version' is 99"),
    "no splits field": (lambda m: m.pop("splits"), "field 'splits' is missing"),
    "shard outside the folder": (
        lambda m: m["shards"][0].update(name="../elsewhere.parquet"),
        "'shards[0].name' must be a .parquet file name",
    ),
    "row groups disagree": (lambda m: m["shards"][0].update(rows=10**6), "'shards[0].row_groups' adds up to"),
    "not an object": (lambda m: m["shards"].__setitem__(0, "x"), "field 'shards[0]' must be a JSON object"),
}


@pytest.mark.parametrize("damage", list(MANIFEST_DAMAGE))
@pytest.mark.parametrize("command", ["write --append", "stats", "verify"])
def test_a_damaged_manifest_is_named_by_every_command(
    damage: str, command: str, dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit, expected = MANIFEST_DAMAGE[damage]
    path = dataset / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))
    if command == "write --append":
        source = tmp_path / "more.parquet"
        pq.write_table(rows(500, 510), source)
        args = ["shards", "write", str(source), "-o", str(dataset), "--append"]
    else:
        args = ["shards", command, str(dataset)]
    code, err = run(args, capsys)
    assert code == 2
    assert str(path) in err and expected in err
    with pytest.raises(InputError, match="manifest.json"):
        Manifest.load(dataset)


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--target-size", "0"),
        ("--target-size", "0.5"),
        ("--target-size", "99999999999999999999999"),
        ("--target-size", "1e400"),
        ("--row-group-size", "99999999999999999999999"),
        ("--buckets", "99999999999999999999"),
        ("--buckets", "5000000000"),
        ("--buckets", "1001"),
        ("--zstd-level", "23"),
    ],
)
def test_a_size_or_count_out_of_range_names_the_flag(
    flag: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "rows.parquet"
    pq.write_table(rows(0, 10), source)
    code, err = run(["shards", "write", str(source), "-o", str(tmp_path / "ds"), flag, value], capsys)
    assert code == 2
    assert f"argument {flag}:" in err and repr(value) in err
    assert not (tmp_path / "ds").exists()


def test_the_library_refuses_bucket_and_size_settings_beyond_their_bounds() -> None:
    from livo.errors import ConfigError

    with pytest.raises(ConfigError, match="buckets"):
        ShardConfig(buckets=10**20)
    with pytest.raises(ConfigError, match="target_shard_bytes"):
        ShardConfig(target_shard_bytes=10**23)
    with pytest.raises(ConfigError, match="row_group_bytes"):
        ShardConfig(row_group_bytes=0)


def test_text_columns_append_whatever_arrow_layout_their_reader_gives(tmp_path: Path, capsys) -> None:
    """pyarrow writes text as `string`, polars reads JSON Lines and CSV as `large_string`: an append of
    the same columns from another format was refused as a schema mismatch."""
    first = tmp_path / "first.parquet"
    pq.write_table(pa.table({"record_id": ["a", "b"], "cluster_id": [0, 1], "prompt": ["x", "y"]}), first)
    more = tmp_path / "more.jsonl"
    more.write_text(
        "".join(json.dumps({"record_id": r, "cluster_id": c, "prompt": p}) + "\n" for r, c, p in [("c", 2, "z")])
    )
    dataset = tmp_path / "ds"
    assert run(["shards", "write", str(first), "-o", str(dataset)], capsys)[0] == 0
    code, err = run(["shards", "write", str(more), "-o", str(dataset), "--append"], capsys)
    assert code == 0, err
    table = pq.ParquetDataset([str(p) for p in sorted(dataset.rglob("*.parquet"))]).read()
    assert sorted(table.column("record_id").to_pylist()) == ["a", "b", "c"]
    assert table.schema.field("record_id").type == pa.string()  # the dataset's layout is kept
