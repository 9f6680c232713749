"""``livo build-dataset CONFIG``: build a preference-pair dataset on Ray (resumable)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    build = subparsers.add_parser(
        "build-dataset",
        help="build (prompt, value, aligned image, violating image) pairs on Ray",
        description="Reads prompts, deduplicates them, selects a value per prompt, rewrites, generates "
        "image pairs on Ray actors, judges them and writes verified shards. Rerunning the same "
        "command resumes an interrupted build. CONFIG is a YAML file or a built-in name (toyworld).",
    )
    build.add_argument("config", help="build config YAML, or 'toyworld' for the shipped toy-world config")
    build.add_argument("-o", "--output", help="output directory (overrides output.directory)")
    build.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a config field, e.g. --set generation.actors=2 (value parsed as YAML)",
    )
    build.add_argument(
        "--address",
        help="Ray address (overrides ray.address; 'auto' joins a running cluster); "
        "without one, a local Ray listening on loopback only is started",
    )
    build.add_argument(
        "--ray-token-file",
        help="the cluster's Ray auth token, a file of mode 0600 (overrides "
        "ray.token_file; needed to join a cluster off loopback unless $RAY_AUTH_TOKEN_PATH is set)",
    )
    build.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
    build.set_defaults(run=run_build, extras=("dataset",))


def run_build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from livo.dataset.config import builtin_config_path, load_build_config
    from livo.dataset.job import build_dataset
    from livo.overrides import parse_overrides
    from livo.user_paths import input_file, output_folder

    overrides = parse_overrides(args.overrides)
    if args.output:
        overrides["output.directory"] = args.output
    if args.address:
        overrides["ray.address"] = args.address
    if args.ray_token_file:
        overrides["ray.token_file"] = args.ray_token_file
    if args.no_progress:
        overrides["progress"] = False
    path = Path(args.config)
    if not path.exists() and "/" not in args.config and not path.suffix:
        path = builtin_config_path(args.config)
    input_file(path, flag="config")
    config = load_build_config(path, overrides)
    # Resumable: an existing build folder is continued or refused by the build itself (its fingerprint).
    output_folder(config.output.directory, flag="--output", overwrite=False, resumable=True)
    report = build_dataset(config)
    print(report.format())
    print(f"report: {Path(report.output) / 'build' / 'report.json'}", file=sys.stderr)
    return 0 if report.verified else 1
