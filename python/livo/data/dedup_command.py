"""``livo dedup``: deduplicate a prompt file, or a corpus of many files on a Ray cluster."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from livo.arg_types import byte_size, fraction, int_at_least, thread_count

if TYPE_CHECKING:
    from livo.data.dedup import DedupResult
    from livo.data.dedup_ray import RayDedupResult


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "dedup",
        help="find exact and near-duplicate prompts",
        description="Adds cluster_id (row of the cluster's first occurrence) and keep (True for "
        "representatives) to every row of a .txt/.jsonl/.csv/.parquet prompt file. With --ray, the "
        "inputs (files, folders, globs) are one corpus deduplicated on a Ray cluster and the output is "
        "a folder of Parquet parts; the result is the same as without --ray.",
    )
    p.add_argument(
        "input",
        nargs="+",
        help="prompt file (.txt one per line, .jsonl, .csv, .parquet); with --ray also several files, folders or globs",
    )
    p.add_argument("-o", "--output", required=True, help="output file (.jsonl, .csv or .parquet); a folder with --ray")
    p.add_argument("--column", help="prompt column (default: 'prompt', or the only column)")
    p.add_argument("--threshold", type=fraction, default=0.8, help="Jaccard threshold in (0, 1]")
    p.add_argument("--num-perm", type=int_at_least(1, 4096), default=128, help="MinHash permutations")
    p.add_argument("--ngram", type=int_at_least(1, 64), default=5, help="character n-gram size")
    p.add_argument(
        "--bands", type=int_at_least(1, 4096), help="LSH bands (default: derived from threshold and num-perm)"
    )
    p.add_argument("--no-verify", action="store_true", help="skip exact-Jaccard verification of LSH candidates")
    p.add_argument("--threads", type=thread_count, help="worker threads (default: all cores; 1 per task with --ray)")
    p.add_argument("--overwrite", action="store_true", help="replace the output if it exists")
    p.add_argument("--keep-only", action="store_true", help="write only the kept rows")
    p.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    ray = p.add_argument_group("distributed (--ray)")
    ray.add_argument("--ray", action="store_true", help="run on Ray Data (a local Ray, or --ray-address)")
    ray.add_argument("--ray-address", help="join this Ray cluster (default: RAY_ADDRESS, else start a local Ray)")
    ray.add_argument("--ray-token-file", help="auth token file for a cluster off loopback")
    ray.add_argument("--num-cpus", type=int_at_least(1, 65536), help="CPUs of a local Ray (default: all)")
    ray.add_argument("--piece-size", type=byte_size, help="input bytes per read task (default 64M)")
    ray.add_argument(
        "--partitions", type=int_at_least(1, 65536), help="blocks per shuffle (default: from the corpus size)"
    )
    ray.add_argument(
        "--task-memory", type=byte_size, help="memory each task reserves on its node (Ray's memory resource)"
    )
    p.set_defaults(run=run_dedup)


def run_dedup(args: argparse.Namespace) -> int:
    from livo.data.dedup import DedupConfig

    config = DedupConfig(
        threshold=args.threshold,
        num_perm=args.num_perm,
        ngram=args.ngram,
        bands=args.bands,
        verify=not args.no_verify,
        threads=args.threads,
    )
    if args.ray:
        return _run_on_ray(args, config)
    from livo.data.dedup import dedup_file
    from livo.data.io import INPUT_SUFFIXES, OUTPUT_SUFFIXES
    from livo.errors import InputError
    from livo.user_paths import input_file, output_file

    # Without --ray these would be ignored: the user meant a distributed run, or gave a stray flag.
    given = [flag for flag, value in RAY_ONLY_FLAGS.items() if getattr(args, value) is not None]
    if given:
        raise InputError(
            f"{', '.join(given)}: only used with --ray; add --ray, or leave {'them' if len(given) > 1 else 'it'} out"
        )

    if len(args.input) > 1:
        raise InputError(f"{len(args.input)} inputs given: without --ray, livo dedup reads one file")
    input_file(args.input[0], flag="input", suffixes=INPUT_SUFFIXES)
    output_file(args.output, flag="--output", overwrite=args.overwrite, suffixes=OUTPUT_SUFFIXES)
    result = dedup_file(
        args.input[0],
        args.output,
        column=args.column,
        config=config,
        progress=False if args.no_progress else None,
        keep_only=args.keep_only,
    )
    _report(result, [int(r) for r in result.empty_rows[:10]], len(result.empty_rows))
    print(f"wrote {args.output}")
    return 0


# The flags of the distributed run, and their argparse names.
RAY_ONLY_FLAGS = {
    "--ray-address": "ray_address",
    "--ray-token-file": "ray_token_file",
    "--num-cpus": "num_cpus",
    "--piece-size": "piece_size",
    "--partitions": "partitions",
    "--task-memory": "task_memory",
}


def _run_on_ray(args: argparse.Namespace, config: object) -> int:
    import logging
    from dataclasses import replace

    from livo.data.corpus import expand_inputs
    from livo.data.dedup import DedupConfig
    from livo.data.io import INPUT_SUFFIXES
    from livo.errors import InputError
    from livo.extras import require_extra
    from livo.runtime import check_ray_settings, start_ray

    require_extra("ray", command="livo dedup --ray")
    assert isinstance(config, DedupConfig)
    expand_inputs(args.input)  # bad inputs are reported before Ray starts
    if args.output.lower().endswith(INPUT_SUFFIXES):
        raise InputError(f"--output {args.output}: with --ray the output is a folder of Parquet parts, not a file")
    check_ray_settings(args.ray_address, args.ray_token_file)
    start_ray(args.ray_address, args.num_cpus, token_file=args.ray_token_file, log_to_driver=False)
    import ray.data  # noqa: F401  (configures its loggers on import; quieted below)

    from livo.data.dedup_ray import RayDedupOptions, dedup_ray

    for name in ("ray.data", "ray.data._internal"):
        logging.getLogger(name).setLevel(logging.ERROR)

    options = RayDedupOptions(
        **({"piece_bytes": args.piece_size} if args.piece_size is not None else {}),
        partitions=args.partitions,
        task_memory=args.task_memory,
        task_threads=args.threads or 1,
    )
    result = dedup_ray(
        args.input,
        args.output,
        column=args.column,
        config=replace(config, threads=None),
        options=options,
        overwrite=args.overwrite,
        keep_only=args.keep_only,
    )
    _report(result, result.first_empty_rows, result.empty)
    print(f"pieces {result.pieces}  partitions {result.partitions}  component rounds {result.component_rounds}")
    if result.resumed:
        print(f"resumed an interrupted run: {', '.join(result.resumed)} read back, not computed")
    print(f"wrote {len(result.parts)} part(s) to {args.output}")
    return 0


def _report(result: DedupResult | RayDedupResult, first_empty: list[int], empty: int) -> None:
    """The summary line both engines print, and the warning naming the first empty prompts."""
    rows, exact, near, clusters = result.rows, result.exact_duplicates, result.near_duplicates, result.clusters
    bands, rows_per_band, seconds = result.bands, result.rows_per_band, result.seconds
    print(
        f"rows {rows:,}  exact duplicates {exact:,}  near duplicates {near:,}  clusters {clusters:,}  "
        f"empty {empty:,}  bands×rows {bands}×{rows_per_band}  {seconds:.2f} s"
    )
    if empty:
        shown = ", ".join(str(r + 1) for r in first_empty[:10])
        more = " ..." if empty > 10 else ""
        print(
            f"warning: {empty} prompt(s) are empty after normalisation (rows {shown}{more}); each is its own cluster",
            file=sys.stderr,
        )
