"""``livo dedup``: deduplicate a prompt file."""

from __future__ import annotations

import argparse
import sys

from livo.arg_types import fraction, positive_int


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "dedup",
        help="find exact and near-duplicate prompts",
        description="Adds cluster_id (row of the cluster's first occurrence) and keep (True for "
        "representatives) to every row of a .txt/.jsonl/.csv/.parquet prompt file.",
    )
    p.add_argument("input", help="prompt file (.txt one per line, .jsonl, .csv, .parquet)")
    p.add_argument("-o", "--output", required=True, help="output file (.jsonl, .csv or .parquet)")
    p.add_argument("--column", help="prompt column (default: 'prompt', or the only column)")
    p.add_argument("--threshold", type=fraction, default=0.8, help="Jaccard threshold in (0, 1]")
    p.add_argument("--num-perm", type=positive_int, default=128, help="MinHash permutations")
    p.add_argument("--ngram", type=positive_int, default=5, help="character n-gram size")
    p.add_argument("--bands", type=positive_int, help="LSH bands (default: derived from threshold and num-perm)")
    p.add_argument("--no-verify", action="store_true", help="skip exact-Jaccard verification of LSH candidates")
    p.add_argument("--threads", type=positive_int, help="worker threads (default: all cores)")
    p.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")
    p.add_argument("--keep-only", action="store_true", help="write only the kept rows")
    p.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    p.set_defaults(run=run_dedup)


def run_dedup(args: argparse.Namespace) -> int:
    from livo.data.dedup import DedupConfig, dedup_file
    from livo.data.io import FORMATS, OUTPUT_FORMATS
    from livo.user_paths import input_file, output_file

    input_file(args.input, flag="input", suffixes=FORMATS)
    output_file(args.output, flag="--output", overwrite=args.overwrite, suffixes=OUTPUT_FORMATS)
    config = DedupConfig(
        threshold=args.threshold,
        num_perm=args.num_perm,
        ngram=args.ngram,
        bands=args.bands,
        verify=not args.no_verify,
        threads=args.threads,
    )
    result = dedup_file(
        args.input,
        args.output,
        column=args.column,
        config=config,
        progress=False if args.no_progress else None,
        keep_only=args.keep_only,
    )
    print(
        f"rows {result.rows:,}  exact duplicates {result.exact_duplicates:,}  "
        f"near duplicates {result.near_duplicates:,}  clusters {result.clusters:,}  "
        f"empty {len(result.empty_rows):,}  bands×rows {result.bands}×{result.rows_per_band}  "
        f"{result.seconds:.2f} s"
    )
    if len(result.empty_rows):
        shown = ", ".join(str(int(r) + 1) for r in result.empty_rows[:10])
        more = " ..." if len(result.empty_rows) > 10 else ""
        print(
            f"warning: {len(result.empty_rows)} prompt(s) are empty after normalisation "
            f"(rows {shown}{more}); each is its own cluster",
            file=sys.stderr,
        )
    print(f"wrote {args.output}")
    return 0
