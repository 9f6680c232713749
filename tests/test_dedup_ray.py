"""Deduplication on Ray Data: the same result as the single-process engine, cluster ids included,
however the corpus is cut; a worker lost mid-shuffle changes nothing; bad input names its file and
rows; and each worker, capped below what the single-process run needs, still completes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from livo.data.dedup import dedup
from livo.data.synthetic import labelled_corpus
from livo.errors import InputError, InvalidParameterError

ROOT = Path(__file__).resolve().parent.parent


def write_corpus(folder: Path, texts: list[str | None]) -> list[Path]:
    """The texts as four files in four formats, in corpus order: .txt, .parquet (4 row groups,
    one null), .jsonl (a column null in its first two thirds and float after: only the whole file says)
    and, for the last 300, .txt.gz (compressed: a piece of its own)."""
    import gzip

    third = len(texts) // 3
    txt, parquet, jsonl = folder / "a.txt", folder / "b.parquet", folder / "c.jsonl"
    compressed, texts = folder / "d.txt.gz", list(texts)
    compressed.write_bytes(gzip.compress("".join(f"{t}\n" for t in texts[-300:]).encode()))
    texts[-300:] = []
    txt.write_text("".join(f"{t}\n" for t in texts[:third]), encoding="utf-8")
    middle = texts[third : 2 * third]
    pq.write_table(
        pa.table({"prompt": middle, "source": [f"b{i}" for i in range(len(middle))]}),
        parquet,
        row_group_size=max(1, len(middle) // 4),
    )
    last = texts[2 * third :]
    rows = ({"prompt": t, "n": i, "score": None if i < 2 * len(last) // 3 else i / 4} for i, t in enumerate(last))
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return [txt, parquet, jsonl, compressed]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], list[str | None], object]:
    texts: list[str | None] = [t.replace("\n", " ") for t in labelled_corpus(9000, seed=11).texts]
    texts[5] = "!!!"  # empty after normalisation
    texts[3005] = None  # a null in the parquet file
    texts[3006] = texts[2]  # an exact duplicate across files
    files = write_corpus(tmp_path_factory.mktemp("corpus"), texts)
    return files, texts, dedup(["" if t is None else t for t in texts])


def read_output(result) -> pa.Table:  # type: ignore[no-untyped-def]
    return pa.concat_tables([pq.read_table(part) for part in result.parts], promote_options="permissive")


def test_a_worker_lost_in_the_shuffle_is_retried_and_changes_nothing(ray_local, corpus, tmp_path) -> None:
    """The first process seen running a shuffle's map task and the first running a bucket task are
    killed (SIGKILL); Ray re-runs their tasks and the result is still the single-process one, cluster
    ids, counts and other columns included. Two blocks per worker, clusters by shuffled star rounds
    (the one-task path is the capped test's; 1, 2 and 4 blocks per worker: benchmarks/dedup_ray.py)."""
    import psutil

    from livo.data.dedup_ray import RayDedupOptions, dedup_ray

    files, texts, reference = corpus
    targets = {"ray::_shuffle_block", "ray::MapBatches(_bucket_pairs)"}
    killed: list[str] = []
    done = threading.Event()

    def kill_first_of_each() -> None:
        deadline = time.monotonic() + 120
        while not done.is_set() and targets and time.monotonic() < deadline:
            for process in psutil.process_iter(["cmdline"]):
                title = " ".join(process.info["cmdline"] or [])
                target = next((t for t in targets if title.startswith(t)), None)
                if target is not None:
                    try:
                        process.kill()
                    except psutil.NoSuchProcess:
                        continue
                    killed.append(target)
                    targets.discard(target)
            time.sleep(0.005)

    killer = threading.Thread(target=kill_first_of_each, daemon=True)
    killer.start()
    try:
        workers = int(ray_local.cluster_resources()["CPU"])
        size = sum(f.stat().st_size for f in files)
        options = RayDedupOptions(
            piece_bytes=size // (2 * workers) + 1, partitions=2 * workers, local_component_edges=0
        )
        result = dedup_ray(files, tmp_path / "out", options=options)
    finally:
        done.set()
        killer.join()
    assert sorted(killed) == ["ray::MapBatches(_bucket_pairs)", "ray::_shuffle_block"], killed
    table = read_output(result)
    np.testing.assert_array_equal(table.column("cluster_id").to_numpy(), reference.cluster_id)
    np.testing.assert_array_equal(table.column("keep").to_numpy(), reference.keep)
    assert table.column("prompt").to_pylist()[:3000] == texts[:3000]
    assert table.column("source").to_pylist()[3000:3002] == ["b0", "b1"]
    # Every part has the corpus's columns, the .jsonl file's with the types a read of the whole file
    # gives (its pieces are null in "score" at first), so the folder reads as one table.
    schemas = {pq.read_schema(part) for part in result.parts}
    assert len(schemas) == 1 and len(result.parts) > 3
    (schema,) = schemas
    assert schema.names == ["prompt", "source", "n", "score", "cluster_id", "keep"]
    assert schema.field("score").type == pa.float64() and schema.field("n").type == pa.int64()
    assert table.column("source").to_pylist()[:2] == [None, None]  # the .txt file has no such column
    assert table.column("prompt").to_pylist()[-300:] == texts[-300:]  # the .txt.gz file, decompressed
    counts = (result.rows, result.exact_duplicates, result.near_duplicates, result.clusters)
    assert counts == (reference.rows, reference.exact_duplicates, reference.near_duplicates, reference.clusters)
    assert (result.candidate_pairs, result.verified_pairs) == (reference.candidate_pairs, reference.verified_pairs)
    assert result.first_empty_rows == [int(r) for r in reference.empty_rows][:10] == [5, 3005]
    assert result.component_rounds > 0
    assert reference.near_duplicates > 500 and reference.exact_duplicates > 1000  # the corpus exercises both


def test_a_run_whose_driver_is_lost_resumes_after_its_finished_stages(ray_local, corpus, tmp_path) -> None:
    """A driver (another process on the same Ray) is killed once its first part is written; the
    rerun reads the pairs and clusters it had checkpointed, writes only the missing parts, and gives
    the single-process result."""
    import psutil

    from livo.data.dedup_ray import RayDedupOptions, dedup_ray

    files, texts, reference = corpus
    out, work = tmp_path / "out", tmp_path / ".out.work"
    options = RayDedupOptions(piece_bytes=sum(f.stat().st_size for f in files) // 16 + 1)
    driver_code = (
        "import ray; from livo.data.dedup_ray import RayDedupOptions, dedup_ray; "
        f"ray.init(address={ray_local.get_runtime_context().gcs_address!r}, log_to_driver=False); "
        f"dedup_ray({[str(f) for f in files]!r}, {str(out)!r}, options=RayDedupOptions(piece_bytes={options.piece_bytes}))"
    )
    driver = subprocess.Popen([sys.executable, "-c", driver_code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while not any((work / "parts").glob("part-*.parquet")):
        assert driver.poll() is None, driver.communicate()[0].decode()[-3000:]
        assert time.monotonic() < deadline, "no part was written within 180 s"
        time.sleep(0.01)
    driver.kill()
    driver.wait()

    # The lost driver's tasks end with it (Ray kills a dead job's workers); wait until they have.
    def writing() -> bool:
        return any("_write_piece" in " ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"]))

    while writing() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not out.exists() and (work / "pairs.json").exists() and (work / "components.json").exists()

    result = dedup_ray(files, out, options=options)
    assert result.resumed[:2] == ["pairs", "components"], result.resumed
    done, total = map(int, result.resumed[2].removeprefix("parts ").split("/"))
    assert 1 <= done < total == result.pieces, result.resumed
    table = read_output(result)
    np.testing.assert_array_equal(table.column("cluster_id").to_numpy(), reference.cluster_id)
    np.testing.assert_array_equal(table.column("keep").to_numpy(), reference.keep)
    assert table.column("prompt").to_pylist()[:3000] == texts[:3000]
    counts = (result.rows, result.exact_duplicates, result.near_duplicates, result.clusters)
    assert counts == (reference.rows, reference.exact_duplicates, reference.near_duplicates, reference.clusters)
    assert sorted(p.name for p in out.iterdir()) == [f"part-{i:05d}.parquet" for i in range(total)]
    assert not work.exists()


def test_a_resume_needs_the_same_piece_size_and_rejects_bad_bands_before_ray(tmp_path) -> None:
    """Parts are numbered by piece: a rerun with another --piece-size read the old parts back as its
    own and published a mix of two plans (rows lost). And --bands that do not divide --num-perm
    failed in a task, after Ray started, with a traceback."""
    from livo.data.dedup import DedupConfig
    from livo.data.dedup_ray import RayDedupOptions, dedup_ray, job_fingerprint

    corpus = tmp_path / "a.txt"
    corpus.write_text("a doctor\na nurse\n")
    files, config = [corpus], DedupConfig()

    def fingerprint(**options: int) -> dict:
        return job_fingerprint(files, None, config, RayDedupOptions(**options), False)

    assert fingerprint(piece_bytes=200) != fingerprint(piece_bytes=4000)
    assert fingerprint(partitions=3, task_memory=1 << 30) == fingerprint()
    with pytest.raises(InvalidParameterError, match="num_perm=128: is not a multiple of the number of bands \\(3\\)"):
        dedup_ray(files, tmp_path / "out", config=DedupConfig(bands=3))


def test_the_work_folder_of_another_job_is_discarded_and_a_stranger_is_refused(tmp_path) -> None:
    from livo.data.stage_checkpoints import StageCheckpoints, work_folder

    folder = work_folder(tmp_path / "out")
    assert folder == tmp_path / ".out.work"
    first = StageCheckpoints(folder, {"inputs": [["a.txt", 3, 1]]}, discard_other=False)
    (folder / "pairs.json").write_text("{}")
    assert StageCheckpoints(folder, {"inputs": [["a.txt", 3, 1]]}, discard_other=False).facts("pairs") == {}
    # An input changed since: the stages are another job's and go.
    assert StageCheckpoints(folder, {"inputs": [["a.txt", 4, 2]]}, discard_other=False).facts("pairs") is None
    assert first.facts("pairs") is None
    stranger = tmp_path / ".other.work"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match=f"^{re.escape(str(stranger))}: exists but is not a work folder"):
        StageCheckpoints(stranger, {}, discard_other=False)
    assert (stranger / "notes.txt").exists()
    StageCheckpoints(stranger, {}, discard_other=True)
    assert not (stranger / "notes.txt").exists()


def test_a_corrupt_file_is_named_with_its_rows(ray_local, tmp_path, capfd) -> None:
    from livo.data.dedup_ray import RayDedupOptions, dedup_ray

    good = tmp_path / "good.txt"
    good.write_text("a red car\n" * 50)
    truncated = tmp_path / "cut.parquet"
    pq.write_table(pa.table({"prompt": [f"prompt {i}" for i in range(100)]}), truncated)
    truncated.write_bytes(truncated.read_bytes()[:-20])
    with pytest.raises(InputError, match=r"cut\.parquet"):
        dedup_ray([good, truncated], tmp_path / "out1")

    broken = tmp_path / "broken.jsonl"
    lines = [json.dumps({"prompt": f"prompt {i}"}) for i in range(40)]
    lines[33] = '{"prompt": "no end'
    broken.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"broken\.jsonl rows ([0-9]+)–([0-9]+): cannot be read as jsonl") as error:
        dedup_ray([good, broken], tmp_path / "out2", options=RayDedupOptions(piece_bytes=200))
    first, last = map(int, re.search(r"rows ([0-9]+)–([0-9]+)", str(error.value)).groups())  # type: ignore[union-attr]
    assert first <= 50 + 34 <= last < first + 20  # the broken line is corpus row 84, in a piece of a few rows
    assert "Traceback" not in str(error.value)
    assert "\n" not in str(error.value)  # one line: without Ray Data's advice on retries
    assert "Traceback" not in capfd.readouterr().err  # Ray Data's console copies of the task's traceback
    assert not (tmp_path / "out2").exists()  # nothing half-written under the output's name
    assert not (tmp_path / ".out2.work").exists()  # no stage finished: no work folder stays
    stray = tmp_path / "stray.jsonl"
    lines[33] = json.dumps({"prompt": 42})  # a number, which polars would read as the text "42"
    stray.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"stray\.jsonl row 84: 'prompt' is a number \(42\), not a string"):
        dedup_ray([good, stray], tmp_path / "out3", options=RayDedupOptions(piece_bytes=200))
    assert not (tmp_path / "out3").exists() and not (tmp_path / ".out3.work").exists()
    cut = tmp_path / "cut.jsonl"
    lines[33] = '{"prompt": "x \\udbff y"}'  # half an emoji, which polars reads as NUL
    cut.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"^\S+cut\.jsonl: line 34: \\udbff is half of a UTF-16 surrogate pair"):
        dedup_ray([good, cut], tmp_path / "out4", options=RayDedupOptions(piece_bytes=200))


def test_each_worker_capped_below_the_single_process_need_completes(tmp_path) -> None:
    """A fresh local Ray whose every worker is in its own memory cgroup of 300 MiB dedups a corpus
    whose single-process run needs more (checked under the same cap: the kernel kills it)."""
    script = ROOT / "tests" / "scripts" / "dedup_ray_capped_workers.py"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = subprocess.run(
        [sys.executable, str(script), str(tmp_path), "300"], capture_output=True, text=True, env=env, timeout=600
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["single_process_killed"], report
    assert report["identical"], report
    assert report["workers"] >= 2 and report["oom_kills"] == 0, report
    assert report["peak_worker_mib"] <= 300, report
