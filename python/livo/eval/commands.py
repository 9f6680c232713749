"""``livo eval CONFIG``: evaluation with baselines."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from livo.arg_types import images_per_prompt, positive_int, thread_count


def register(subparsers: Any) -> None:
    evaluate = subparsers.add_parser(
        "eval",
        help="evaluate LiVO and baselines on the same prompts and seeds; write a report",
        description="Run every method of an evaluation config (YAML) on the same prompts and seeds, judge the "
        "images, and write results.json, results.md, PNG grids and a self-contained index.html. "
        "Example config: python/livo/eval/configs/toyworld.yaml.",
    )
    evaluate.add_argument("config", help="evaluation config (YAML)")
    evaluate.add_argument("--output", help="report folder (default: the config's 'output')")
    evaluate.add_argument("--overwrite", action="store_true", help="write over a report folder that is not empty")
    evaluate.add_argument("--per-prompt", type=images_per_prompt, help="images per prompt (default: the config's)")
    evaluate.add_argument(
        "--threads", type=thread_count, help="torch threads per generating process (default: the config's)"
    )
    evaluate.add_argument(
        "--workers",
        type=positive_int,
        help="generating processes (default: the config's; on CPU, 2 x 1 thread beats 1 x 2)",
    )
    evaluate.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a config field, dotted for nested ones (e.g. --set quality.features=pixels; "
        "value parsed as YAML)",
    )
    evaluate.set_defaults(run=run_eval, extras=("eval",))


class StageProgress:
    """Progress on stderr: a tqdm bar on a terminal, else one line per method (logs stay readable)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: Any = None
        self.current: str | None = None
        self.started = time.perf_counter()
        self.terminal = sys.stderr.isatty()

    def __call__(self, item: str, done: int, total: int) -> None:
        if not self.terminal:
            if item != self.current:
                self.current = item
                print(
                    f"    {self.label}: {item} (prompt {done}/{total} overall, "
                    f"{time.perf_counter() - self.started:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
            return
        if self.bar is not None and self.bar.total != total:  # a new phase (workers generate, then judging)
            self.bar.close()
            self.bar = None
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.label, unit="prompt", file=sys.stderr, dynamic_ncols=True)
        self.bar.set_postfix_str(item[:40])
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_evaluation(config: Any, label: str = "eval") -> tuple[str, str]:
    """Evaluate and write the report; returns (markdown table, path of index.html)."""
    from livo.eval.harness import evaluate
    from livo.eval.report import markdown_table, write_report

    progress = StageProgress(label)
    try:
        result = evaluate(config, progress)
    finally:
        progress.close()
    page = write_report(result, config.output)
    return markdown_table(result), str(page)


def run_eval(args: argparse.Namespace) -> int:
    from livo.eval.config import load_eval_config
    from livo.overrides import given_flags, parse_overrides
    from livo.user_paths import input_file, output_folder

    input_file(args.config, flag="config")
    overrides = parse_overrides(args.overrides) | given_flags(
        {"output": args.output, "per_prompt": args.per_prompt, "threads": args.threads, "workers": args.workers}
    )
    config = load_eval_config(args.config, overrides)
    output_folder(config.output, flag="--output" if args.output else "output (config)", overwrite=args.overwrite)
    started = time.perf_counter()
    table, page = run_evaluation(config)
    print(table)
    print(f"\nreport: {page}  ({time.perf_counter() - started:.0f} s)")
    return 0
