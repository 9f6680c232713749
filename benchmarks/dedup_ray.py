"""Distributed dedup (``livo dedup --ray``) against the single-process engine on the same corpus.

For a labelled synthetic corpus (``livo.data.synthetic``) written as Parquet, it reports:

- identity: for each number of blocks per CPU given (``--blocks``), whether the distributed cluster
  ids equal the single-process ones;
- speed: the single-process engine on one thread (its throughput per core) and the distributed run
  on every CPU of the Ray cluster, each the median of ``--repeats`` runs, and their ratio per core;
- the shuffle bytes per row, and a projection of rows/s for clusters of N nodes.

Run on a local Ray (default) or a running cluster (``--address``, e.g. from ``scripts/cluster.sh
exec head -- ...``). The corpus folder must be readable at the same path by every node.

    python benchmarks/dedup_ray.py --rows 1000000 --blocks 1,2,4 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--blocks", default="2", help="blocks per CPU to run (pieces and shuffle partitions)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--address", help="Ray cluster to join (default: start a local Ray)")
    parser.add_argument("--num-cpus", type=int, help="CPUs of a local Ray")
    parser.add_argument("--work", help="folder for the corpus and outputs (shared by every node)")
    parser.add_argument("--nodes", default="2,4,8,16,64", help="cluster sizes of the projection")
    args = parser.parse_args()

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from livo.data.dedup import DedupConfig, dedup_file
    from livo.data.synthetic import labelled_corpus
    from livo.runtime import start_ray

    work = Path(args.work or tempfile.mkdtemp(prefix="livo-dedup-ray-"))
    work.mkdir(parents=True, exist_ok=True)
    corpus = work / f"corpus-{args.rows}-{args.seed}.parquet"
    if not corpus.exists():
        texts = labelled_corpus(args.rows, seed=args.seed).texts
        pq.write_table(pa.table({"prompt": list(texts)}), corpus, row_group_size=50_000)

    # Wall clock around the whole command, as for the Ray runs (reading the input and writing the
    # output included): the engine's own timer leaves both out.
    single_seconds = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        result = dedup_file(corpus, work / "single.parquet", config=DedupConfig(threads=1), progress=False)
        single_seconds.append(time.perf_counter() - started)
    reference = result.cluster_id
    single = statistics.median(single_seconds)

    start_ray(args.address, args.num_cpus, log_to_driver=False)
    import logging

    import ray

    from livo.data.dedup_ray import RayDedupOptions, dedup_ray

    logging.getLogger("ray.data").setLevel(logging.ERROR)
    cpus = int(ray.cluster_resources()["CPU"])
    nodes = len([n for n in ray.nodes() if n["Alive"]])
    size = corpus.stat().st_size
    rows: list[dict[str, object]] = []
    for blocks in [int(b) for b in args.blocks.split(",")]:
        options = RayDedupOptions(piece_bytes=size // (cpus * blocks) + 1, partitions=cpus * blocks)
        seconds, identical = [], []
        for _ in range(args.repeats):
            out = work / f"ray-{blocks}"
            started = time.perf_counter()
            run = dedup_ray([corpus], out, options=options, overwrite=True)
            seconds.append(time.perf_counter() - started)
            ids = pa.concat_tables([pq.read_table(p, columns=["cluster_id"]) for p in run.parts])
            identical.append(bool(np.array_equal(ids.column("cluster_id").to_numpy(), reference)))
        median = statistics.median(seconds)
        rows.append(
            {
                "blocks_per_cpu": blocks,
                "pieces": run.pieces,
                "partitions": run.partitions,
                "identical": all(identical),
                "seconds": [round(s, 2) for s in seconds],
                "median_s": round(median, 2),
                "rows_per_s_per_core": round(args.rows / median / cpus),
                "ratio_per_core": round((args.rows / median / cpus) / (args.rows / single), 3),
                "shuffle_bytes_per_row": round(run.shuffle_bytes / args.rows, 1),
                "stage_seconds": {k: round(v, 2) for k, v in run.stage_seconds.items()},
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr)

    load = os.getloadavg()[0]
    print(
        f"\n{args.rows:,} prompts (seed {args.seed}); Ray: {nodes} node(s), {cpus} CPU(s); "
        f"median of {args.repeats}; load {load:.2f}\n"
    )
    print(
        f"single process, 1 thread: {single:.2f} s ({', '.join(f'{s:.2f}' for s in single_seconds)}), "
        f"{args.rows / single:,.0f} rows/s per core\n"
    )
    print(
        "| blocks per CPU | pieces | partitions | identical | seconds (runs) | rows/s per core | × single per core | shuffle bytes/row |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['blocks_per_cpu']} | {r['pieces']} | {r['partitions']} | {r['identical']} | {r['median_s']} "
            f"({', '.join(str(s) for s in r['seconds'])}) | {r['rows_per_s_per_core']:,} | {r['ratio_per_core']} "
            f"| {r['shuffle_bytes_per_row']} |"
        )
    best = rows[0]
    per_core = float(best["rows_per_s_per_core"])  # type: ignore[arg-type]
    print(
        f"\nProjection from blocks per CPU {best['blocks_per_cpu']} (per-core throughput held, one CPU per node "
        "as measured; the fixed cost of each stage is not amortised in this figure):\n"
    )
    print("| nodes | rows/s | shuffle GB per 100M rows |")
    print("| --- | --- | --- |")
    for n in [int(x) for x in args.nodes.split(",")]:
        print(f"| {n} | {per_core * n:,.0f} | {float(best['shuffle_bytes_per_row']) * 1e8 / 1e9:.1f} |")  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
