"""The ``livo`` command. Each stage registers its own sub-commands; heavy libraries (torch, ray,
diffusers) are imported only by the sub-command that runs, so ``livo dedup`` starts instantly."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from livo.arg_parser import LivoArgumentParser

# Modules exposing ``register(subparsers)``; each adds its sub-commands with ``set_defaults(run=...)``.
COMMAND_MODULES = [
    "livo.data.dedup_command",
    "livo.data.shards_command",
    "livo.models_command",
    "livo.toyworld.commands",
    "livo.values.commands",
    "livo.train.commands",
    "livo.eval.commands",
    "livo.dataset.commands",
    "livo.serve.commands",
    "livo.demo",
]


def build_parser() -> argparse.ArgumentParser:
    from livo import __version__

    parser = LivoArgumentParser(
        prog="livo",
        description="Value alignment for text-to-image diffusion models (LiVO).",
    )
    parser.add_argument("--version", action="version", version=f"livo {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="also show third-party warnings and model-loading progress bars"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from livo.errors import run_command
    from livo.extras import require_extra
    from livo.runtime import VERBOSE_VARIABLE, apply_process_defaults

    if args.verbose:
        os.environ[VERBOSE_VARIABLE] = "1"
    apply_process_defaults()

    def run() -> int | None:
        require_extra(*getattr(args, "extras", ()), command="this command")
        return args.run(args)  # type: ignore[no-any-return]

    return run_command(args.command, run)


if __name__ == "__main__":
    sys.exit(main())
