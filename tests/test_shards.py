"""Shard datasets on real files: determinism, crash-safe resume, verification, standard readers."""

from __future__ import annotations

import io
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from livo.cli import main
from livo.data.schema import PAIR_SCHEMA, pair_table
from livo.data.shards import (
    DatasetLockedError,
    Manifest,
    SchemaMismatchError,
    ShardConfig,
    ShardWriter,
    shard_stats,
    verify_shards,
    write_shards,
)

VALUES = [("gender", "bias/gender"), ("bloody", "toxicity/bloody"), ("zombie", "toxicity/zombie")]
CONFIG = ShardConfig(
    splits={"train": 0.75, "val": 0.25},
    target_shard_bytes=48 << 10,
    row_group_bytes=12 << 10,
    metadata={"run": "test"},
)


def png(seed: int) -> bytes:
    image = Image.frombytes("RGB", (24, 24), random.Random(seed).randbytes(24 * 24 * 3))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def pairs(start: int, stop: int) -> pa.Table:
    records = []
    for i in range(start, stop):
        value_id, category = VALUES[i % 3]
        records.append(
            {
                "record_id": f"pair-{i:05d}",
                "cluster_id": i // 4,
                "prompt": f"a photo of subject {i}",
                "aligned_prompt": f"a photo of subject {i}, {value_id}",
                "value_id": value_id,
                "value_text": f"principle {value_id}",
                "category": category,
                "seed": i,
                "aligned_image": png(i),
                "violating_image": png(i + 100_000),
                "judge_scores": [{"judge": "toy", "aligned": 0.1, "violating": 0.9}],
                "model_id": "toyworld/base",
                "created_by": "livo test",
                "run_id": "run-1",
                "created_at": "2026-01-01T00:00:00Z",
            }
        )
    return pair_table(records)


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return pairs(0, 240)


def dataset_bytes(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if not p.name.startswith(".")}


def record_ids(directory: Path) -> Counter[str]:
    manifest = Manifest.load(directory)
    return Counter(pl.read_parquet(manifest.files(), columns=["record_id"])["record_id"].to_list())


def test_same_pairs_give_byte_identical_shards_and_manifest(tmp_path: Path, table: pa.Table) -> None:
    write_shards(tmp_path / "a", table, CONFIG)
    write_shards(tmp_path / "b", table.to_batches(max_chunksize=240), CONFIG)
    a, b = dataset_bytes(tmp_path / "a"), dataset_bytes(tmp_path / "b")
    assert len(a) > 4
    assert a == b


def test_a_polars_frame_gives_the_same_files_as_pyarrow(tmp_path: Path, table: pa.Table) -> None:
    write_shards(tmp_path / "arrow", table, CONFIG, schema=PAIR_SCHEMA)
    write_shards(tmp_path / "polars", pl.from_arrow(table), CONFIG, schema=PAIR_SCHEMA)
    assert dataset_bytes(tmp_path / "arrow") == dataset_bytes(tmp_path / "polars")


def test_groups_share_a_split_and_the_manifest_counts_every_row(tmp_path: Path, table: pa.Table) -> None:
    manifest = write_shards(tmp_path, table, CONFIG)
    assert manifest.rows() == 240 == manifest.rows("train") + manifest.rows("val")
    splits = pl.concat(
        pl.read_parquet(tmp_path / s.name, columns=["cluster_id"]).with_columns(split=pl.lit(s.split))
        for s in manifest.shards
    )
    assert splits.group_by("cluster_id").agg(pl.col("split").n_unique())["split"].max() == 1
    assert 0.1 < manifest.rows("val") / 240 < 0.4


WRITER_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import pyarrow.parquet as pq
    from livo.data.shards import ShardConfig, ShardWriter
    config = ShardConfig(splits={"train": 0.75, "val": 0.25}, target_shard_bytes=48 << 10, row_group_bytes=12 << 10)
    source, out = sys.argv[1], sys.argv[2]
    with ShardWriter(out, config) as writer:
        for batch in pq.ParquetFile(source).iter_batches(batch_size=10):
            writer.write(batch)
            print("batch", flush=True)
            time.sleep(0.05)
    print("done", flush=True)
    """
)


def test_a_writer_killed_midway_then_resumed_writes_every_row_exactly_once(tmp_path: Path, table: pa.Table) -> None:
    source, out = tmp_path / "pairs.parquet", tmp_path / "dataset"
    pq.write_table(table, source)
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER_SCRIPT, str(source), str(out)], stdout=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (out / "manifest.json").exists() and len(Manifest.load(out).shards) >= 3:
            break
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    committed = Manifest.load(out).rows()
    assert 0 < committed < 240, "the kill should land midway"

    with ShardWriter(out, CONFIG) as writer:
        stats = writer.write(table)
    assert stats.skipped >= committed
    assert record_ids(out) == Counter(table.column("record_id").to_pylist())
    assert verify_shards(out).ok
    assert not any(p.name.endswith(".partial") for p in out.iterdir())


def test_rerunning_a_finished_write_adds_nothing(tmp_path: Path, table: pa.Table) -> None:
    write_shards(tmp_path, table, CONFIG)
    before = dataset_bytes(tmp_path)
    with ShardWriter(tmp_path, CONFIG) as writer:
        assert writer.contains(["pair-00000", "pair-99999"]) == [True, False]
        assert writer.write(table).written == 0
    assert dataset_bytes(tmp_path) == before


def test_verify_names_truncated_and_altered_shards(
    tmp_path: Path, table: pa.Table, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write_shards(tmp_path, table, CONFIG)
    assert main(["shards", "verify", str(tmp_path)]) == 0
    truncated, altered = tmp_path / manifest.shards[0].name, tmp_path / manifest.shards[1].name
    truncated.write_bytes(truncated.read_bytes()[:-64])
    data = bytearray(altered.read_bytes())
    data[len(data) // 2] ^= 1
    altered.write_bytes(bytes(data))
    report = verify_shards(tmp_path)
    assert {(p.shard, p.kind) for p in report.problems} == {
        (truncated.name, "truncated"),
        (altered.name, "corrupt"),
    }
    capsys.readouterr()
    assert main(["shards", "verify", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert truncated.name in out and altered.name in out


def test_shards_load_with_polars_pyarrow_and_hf_datasets(tmp_path: Path, table: pa.Table) -> None:
    import datasets

    manifest = write_shards(tmp_path / "d", table, CONFIG)
    expected = table.sort_by("record_id")
    from_polars = pl.read_parquet(manifest.files()).sort("record_id").to_arrow()
    assert from_polars.column("aligned_image").to_pylist() == expected.column("aligned_image").to_pylist()
    from_pyarrow = pq.read_table(manifest.files()).sort_by("record_id")
    assert from_pyarrow.cast(PAIR_SCHEMA).equals(expected)
    loaded = datasets.load_dataset("parquet", data_files=manifest.data_files(), cache_dir=str(tmp_path / "hf"))
    assert {s: len(loaded[s]) for s in loaded} == {s: manifest.rows(s) for s in manifest.data_files()}
    first = loaded["train"][0]
    row = expected.filter(pa.compute.equal(expected["record_id"], first["record_id"])).to_pylist()[0]
    assert first["violating_image"] == row["violating_image"]
    assert first["judge_scores"] == row["judge_scores"]


def test_stats_count_rows_per_split_value_and_category(
    tmp_path: Path, table: pa.Table, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write_shards(tmp_path, table, CONFIG)
    stats = shard_stats(tmp_path)
    assert stats["rows"].sum() == 240
    train_gender = stats.filter((pl.col("split") == "train") & (pl.col("value_id") == "gender"))["rows"].item()
    ids = pl.read_parquet(manifest.files("train"), columns=["value_id"])
    assert train_gender == (ids["value_id"] == "gender").sum()
    assert main(["shards", "stats", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"split train: {manifest.rows('train'):,} rows" in out
    assert "toxicity/zombie" in out


def test_cli_write_shards_a_parquet_file_and_resumes(
    tmp_path: Path, table: pa.Table, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "pairs.parquet"
    pq.write_table(table, source)
    args = [
        "shards",
        "write",
        str(source),
        "-o",
        str(tmp_path / "d"),
        "--split",
        "train=0.75",
        "--split",
        "val=0.25",
        "--target-size",
        "48KiB",
        "--row-group-size",
        "12KiB",
        "--pair-schema",
    ]
    assert main(args) == 0
    manifest = Manifest.load(tmp_path / "d")
    assert manifest.rows() == 240
    assert len(manifest.shards) >= 8
    assert all(s.bytes < 2 * (48 << 10) for s in manifest.shards), [s.bytes for s in manifest.shards]
    capsys.readouterr()
    # The dataset holds rows now: adding to it is explicit.
    assert main(args) == 2
    assert "holds a dataset of 240 rows; pass --append" in capsys.readouterr().err
    assert main([*args, "--append"]) == 0
    assert "wrote 0 new, skipped 240 already present (total 240; 240 before)" in capsys.readouterr().out


def test_a_second_writer_is_refused_while_the_first_is_open(tmp_path: Path) -> None:
    with ShardWriter(tmp_path, CONFIG):
        with pytest.raises(DatasetLockedError):
            ShardWriter(tmp_path, CONFIG)


def test_a_null_record_id_is_named_by_its_row_in_the_whole_input(tmp_path: Path) -> None:
    """Input is written batch by batch; the row was counted within its batch (index 5000 of a stream
    of 4096-row batches was reported as row 904). Rows count from 1, as in every other message."""
    schema = pa.schema([("record_id", pa.string()), ("cluster_id", pa.int64())])
    ids = [f"id{i}" for i in range(6000)]
    ids[5000] = None
    rows = pa.table({"record_id": ids, "cluster_id": list(range(6000))}, schema=schema)
    with ShardWriter(tmp_path, ShardConfig(splits={"train": 1.0})) as writer:
        with pytest.raises(SchemaMismatchError, match=r"null record id at row 5001\b"):
            writer.write(pa.RecordBatchReader.from_batches(schema, rows.to_batches(max_chunksize=4096)))


def test_contains_answers_while_another_thread_writes_a_python_stream(tmp_path: Path) -> None:
    """contains() waited for the writer's lock holding the GIL, while the writing thread held the lock
    and needed the GIL for the stream's next batch: both hung."""
    import threading

    schema = pa.schema([("record_id", pa.string()), ("cluster_id", pa.int64())])
    first_sent = threading.Event()

    def batches():  # noqa: ANN202
        for i in range(4):
            yield pa.record_batch([pa.array([f"id{i}"]), pa.array([i])], schema=schema)
            first_sent.set()
            time.sleep(0.2)

    with ShardWriter(tmp_path, ShardConfig(splits={"train": 1.0})) as writer:
        thread = threading.Thread(target=writer.write, args=(pa.RecordBatchReader.from_batches(schema, batches()),))
        thread.start()
        assert first_sent.wait(10)
        answer: list[list[bool]] = []
        asker = threading.Thread(target=lambda: answer.append(writer.contains(["id0", "other"])), daemon=True)
        asker.start()
        asker.join(timeout=20)
        thread.join(timeout=20)
        assert not asker.is_alive() and not thread.is_alive(), "contains() and write() deadlocked"
        assert answer == [[True, False]]


def test_rows_with_other_columns_are_refused(tmp_path: Path, table: pa.Table) -> None:
    with ShardWriter(tmp_path, CONFIG) as writer:
        writer.write(table.slice(0, 10))
        with pytest.raises(SchemaMismatchError, match="prompt"):
            writer.write(table.slice(10, 10).drop_columns(["prompt"]))


def test_pair_records_name_the_row_that_is_not_an_image_or_lacks_an_id(table: pa.Table) -> None:
    import io

    from PIL import Image

    from livo.errors import InputError

    record = table.slice(0, 1).to_pylist()[0]
    with pytest.raises(InputError, match="violating_image: row 2 is not PNG, JPEG or WebP data"):
        pair_table([record, {**record, "violating_image": b"GIF89a..."}])
    with pytest.raises(InputError, match="aligned_image: row 1 is not PNG, JPEG or WebP data"):
        pair_table([{**record, "aligned_image": b"RIFF\x00\x00\x00\x00WAVE"}])  # RIFF, but audio
    # JPEG and WebP, which the trainer decodes as it does PNG, were refused (Pick-a-Pic stores JPEG).
    encoded = {}
    for kind in ("JPEG", "WEBP"):
        buffer = io.BytesIO()
        Image.open(io.BytesIO(record["violating_image"])).convert("RGB").save(buffer, format=kind)
        encoded[kind] = buffer.getvalue()
    pairs = pair_table([{**record, "aligned_image": encoded["JPEG"], "violating_image": encoded["WEBP"]}])
    assert pairs.column("violating_image")[0].as_py()[8:12] == b"WEBP"
    with pytest.raises(InputError, match="record_id: null at row 1"):
        pair_table([{**record, "record_id": None}])


def test_pair_records_carry_every_value_and_refuse_inconsistent_lists(table: pa.Table) -> None:
    from livo.errors import InputError

    record = table.slice(0, 1).to_pylist()[0]
    assert table.column("value_ids").to_pylist()[:3] == [[v] for v in table.column("value_id").to_pylist()[:3]]
    single = {k: v for k, v in record.items() if k not in ("value_ids", "value_texts")}
    double = {**single, "value_ids": [single["value_id"], "fair"], "value_texts": [single["value_text"], "be fair"]}
    assert pair_table([double]).column("value_texts").to_pylist() == [[single["value_text"], "be fair"]]
    with pytest.raises(InputError, match=r"pair row 2: value_ids must start with value_id 'gender', got \['fair'"):
        pair_table([double, {**double, "value_ids": ["fair", single["value_id"]]}])
    with pytest.raises(InputError, match=r"pair row 1: value_ids .* repeat a value"):
        pair_table([{**double, "value_ids": [single["value_id"]] * 2}])
    with pytest.raises(InputError, match=r"pair row 1: .* one text per value"):
        pair_table([{**double, "value_texts": [single["value_text"]]}])
    with pytest.raises(InputError, match=r"pair row 1: value_texts .* holds a null"):
        pair_table([{**double, "value_texts": [single["value_text"], None]}])


def test_a_version_1_table_conforms_to_version_2_with_one_value_each(tmp_path: Path, table: pa.Table) -> None:
    from livo.data.schema import PAIR_SCHEMA_VERSION, conform_pairs

    version_1 = table.drop_columns(["value_ids", "value_texts"])
    assert conform_pairs(version_1).equals(table)
    path = tmp_path / "v1.parquet"
    pq.write_table(pl.from_arrow(version_1).to_arrow(), path)
    assert main(["shards", "write", str(path), "-o", str(tmp_path / "out"), "--pair-schema"]) == 0
    manifest = Manifest.load(tmp_path / "out")
    assert manifest.schema_version == PAIR_SCHEMA_VERSION == "livo.pair/2"
    written = pa.concat_tables(pq.read_table(tmp_path / "out" / s.name) for s in manifest.shards)
    assert sorted(written.column("value_ids").to_pylist()) == sorted([v] for v in table.column("value_id").to_pylist())
