"""Shard writing vs ``pyarrow.parquet.write_table`` on the same table, and peak memory vs dataset size.

    .venv/bin/python benchmarks/shard_write.py                 # defaults used in docs/benchmarks.md
    .venv/bin/python benchmarks/shard_write.py --rows 500 --image-kib 32 --memory-mib 64 256

Throughput: the same in-memory pair table (two incompressible "PNG" payloads per row plus text
columns) is written once as a single Parquet file by pyarrow and once as a sharded dataset by
``livo.data.shards.write_shards`` (hashing, split assignment, shard rolling, BLAKE3, fsync, manifest
included), both with zstd at the same level; the median of ``--repeat`` interleaved runs (an odd
number, so the median is a run, whose CPU time is reported with it). Memory: a child process
streams generated batches (the dataset never exists in memory) into the writer and reports its peak
RSS, for several dataset sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from livo.data.shards import ShardConfig, write_shards

MIB = 1 << 20


def pair_batch(start: int, rows: int, image_bytes: int) -> pa.RecordBatch:
    rng = np.random.default_rng(start)
    magic = np.frombuffer(b"\x89PNG\r\n\x1a\n", dtype=np.uint8)

    def images() -> pa.Array:
        data = rng.integers(0, 256, size=(rows, image_bytes), dtype=np.uint8)
        data[:, :8] = magic
        offsets = np.arange(rows + 1, dtype=np.int32) * image_bytes
        return pa.Array.from_buffers(pa.binary(), rows, [None, pa.py_buffer(offsets), pa.py_buffer(data)])

    ids = range(start, start + rows)
    return pa.record_batch(
        {
            "record_id": [f"pair-{i:08d}" for i in ids],
            "cluster_id": pa.array([i // 3 for i in ids], pa.int64()),
            "prompt": [f"a photo of a doctor number {i} in a hospital" for i in ids],
            "value_id": [("gender", "bloody", "zombie")[i % 3] for i in ids],
            "category": [("bias/gender", "toxicity/bloody", "toxicity/zombie")[i % 3] for i in ids],
            "seed": pa.array(list(ids), pa.int64()),
            "aligned_image": images(),
            "violating_image": images(),
        }
    )


def timed(run) -> tuple[float, float]:
    """(wall seconds, CPU seconds of all threads) of one run."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def throughput(args: argparse.Namespace, work: Path) -> dict[str, tuple[float, float]]:
    from livo import _native

    batch_rows = 256
    table = pa.Table.from_batches(
        [pair_batch(s, min(batch_rows, args.rows - s), args.image_kib * 1024) for s in range(0, args.rows, batch_rows)]
    )
    config = ShardConfig(target_shard_bytes=args.shard_mib * MIB, zstd_level=args.zstd_level)
    binary = ["aligned_image", "violating_image"]
    others = [n for n in table.column_names if n not in binary]
    single = work / "single.parquet"

    # Every writer writes new files each run (the filesystem treats overwriting differently).
    def pyarrow_default() -> None:
        single.unlink(missing_ok=True)
        pq.write_table(table, single, compression="zstd", compression_level=args.zstd_level)

    def pyarrow_tuned() -> None:
        single.unlink(missing_ok=True)
        pq.write_table(
            table,
            single,
            compression="zstd",
            compression_level=args.zstd_level,
            use_dictionary=others,
            write_statistics=others,
        )

    def pyarrow_tuned_fsync() -> None:
        """The same, made as durable as a shard: the bytes reach the disk before it returns."""
        pyarrow_tuned()
        with open(single, "rb") as handle:
            os.fsync(handle.fileno())

    def parquet_rs_single() -> None:
        single.unlink(missing_ok=True)
        _native._write_single_file(
            str(single), table, zstd_level=args.zstd_level, row_group_bytes=config.row_group_bytes
        )

    def shards() -> None:
        shutil.rmtree(work / "shards", ignore_errors=True)
        write_shards(work / "shards", table, config)

    result = {"table_mib": (table.nbytes / MIB, 0.0)}
    writers = [
        ("pyarrow_default", pyarrow_default),
        ("pyarrow_tuned", pyarrow_tuned),
        ("pyarrow_tuned_fsync", pyarrow_tuned_fsync),
        ("parquet_rs_single", parquet_rs_single),
        ("livo_shards", shards),
    ]
    for _name, run in writers:
        run()  # warm the page cache and the allocator
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in writers}
    for _ in range(args.repeat):  # interleaved, so load from other processes hits every writer alike
        for name, run in writers:
            runs[name].append(timed(run))
    for name, timings in runs.items():
        result[name] = sorted(timings)[len(timings) // 2]  # the median run (by wall time)
    return result


CHILD = """
import json, sys, threading, time
import psutil
sys.path.insert(0, sys.argv[1])
from shard_write import pair_batch
from livo.data.shards import ShardConfig, ShardWriter
total_mib, shard_mib, image_kib, out = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
row_bytes = 2 * image_kib * 1024 + 200
rows = total_mib * (1 << 20) // row_bytes
process = psutil.Process()
pair_batch(0, 128, image_kib * 1024)  # warm numpy and pyarrow before the baseline
base = process.memory_info().rss
peak = base
running = True
def sample():
    global peak
    while running:
        peak = max(peak, process.memory_info().rss)
        time.sleep(0.005)
sampler = threading.Thread(target=sample)
sampler.start()
config = ShardConfig(target_shard_bytes=shard_mib << 20, row_group_bytes=min(32, shard_mib) << 20)
with ShardWriter(out, config) as writer:
    for start in range(0, rows, 128):
        writer.write(pair_batch(start, min(128, rows - start), image_kib * 1024))
running = False
sampler.join()
print(json.dumps({"rows": rows, "peak_rss_mib": peak / (1 << 20), "growth_mib": (peak - base) / (1 << 20)}))
"""


def memory(args: argparse.Namespace, work: Path) -> list[dict[str, float]]:
    here = str(Path(__file__).resolve().parent)
    results = []
    for total in args.memory_mib:
        out = work / f"mem-{total}"
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, here, str(total), str(args.shard_mib), str(args.image_kib), str(out)],
            check=True,
            capture_output=True,
            text=True,
        )
        results.append({"dataset_mib": total, **json.loads(proc.stdout)})
        shutil.rmtree(out)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=3000, help="rows of the throughput table (default 3000)")
    parser.add_argument("--image-kib", type=int, default=48, help="bytes per image in KiB (default 48)")
    parser.add_argument("--shard-mib", type=int, default=64, help="target shard size in MiB (default 64)")
    parser.add_argument("--zstd-level", type=int, default=3, help="zstd level for both writers (default 3)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per writer, odd; the median counts (default 3)")
    parser.add_argument(
        "--memory-mib",
        type=int,
        nargs="*",
        default=[256, 1024],
        help="dataset sizes for the peak-memory runs (default 256 1024)",
    )
    parser.add_argument("--dir", help="where to write (default: the system temp directory)")
    args = parser.parse_args()
    if args.repeat < 1 or args.repeat % 2 == 0:
        parser.error("--repeat: an odd number, so that the median is one of the runs")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        work = Path(tmp)
        t = throughput(args, work)
        size = t["table_mib"][0]
        livo_wall = t["livo_shards"][0]
        print(f"table: {args.rows} rows, {size:.0f} MiB in memory, zstd level {args.zstd_level}, dir {work}")
        print("| writer | median wall time (s) | MiB/s | CPU time of that run (s) | livo shards throughput / this |")
        print("| --- | --- | --- | --- | --- |")
        labels = {
            "pyarrow_default": "pyarrow.parquet.write_table (defaults)",
            "pyarrow_tuned": "pyarrow.parquet.write_table (no dictionary/statistics on images)",
            "pyarrow_tuned_fsync": "the same + fsync (the durability of a shard)",
            "parquet_rs_single": "parquet-rs ArrowWriter, one file, shard settings (no split/hash/fsync)",
            "livo_shards": f"livo write_shards ({args.shard_mib} MiB shards, BLAKE3, fsync, manifest)",
        }
        for key, label in labels.items():
            wall, cpu = t[key]
            print(f"| {label} | {wall:.2f} | {size / wall:.0f} | {cpu:.2f} | {wall / livo_wall:.2f}x |")
        if args.memory_mib:
            print()
            print("| dataset streamed (MiB) | rows | peak RSS (MiB) | growth during writing (MiB) |")
            print("| --- | --- | --- | --- |")
            for m in memory(args, work):
                print(f"| {m['dataset_mib']} | {m['rows']} | {m['peak_rss_mib']:.0f} | {m['growth_mib']:.0f} |")


if __name__ == "__main__":
    main()
