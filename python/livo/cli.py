"""The ``livo`` command. Each stage registers its own sub-commands; heavy libraries (torch, ray,
diffusers) are imported only by the sub-command that runs, so ``livo dedup`` starts instantly."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from livo.arg_parser import LivoArgumentParser

# Each top-level command and the module whose ``register(subparsers)`` adds it (with its own
# sub-commands, each with ``set_defaults(run=...)``).
COMMAND_MODULES = {
    "dedup": "livo.data.dedup_command",
    "shards": "livo.data.shards_command",
    "models": "livo.models_command",
    "toyworld": "livo.toyworld.commands",
    "values": "livo.values.commands",
    "train": "livo.train.commands",
    "eval": "livo.eval.commands",
    "build-dataset": "livo.dataset.commands",
    "serve": "livo.serve.commands",
    "demo": "livo.demo",
}


def named_command(argv: Sequence[str]) -> str | None:
    """The command ``argv`` runs (its first word that is not an option), if it is one of livo's."""
    first = next((word for word in argv if not word.startswith("-")), None)
    return first if first in COMMAND_MODULES else None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``livo`` parser. Given the arguments, only the named command's module is imported: building
    every command's parser imports numpy, pyarrow and pydantic models (a quarter of a second), which
    ``livo dedup`` on a small file would otherwise spend more time on than on its work. Without a
    known command (``livo --help``, a typo) every command is registered, for the full usage."""
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
    only = named_command(argv) if argv is not None else None
    for name, module in COMMAND_MODULES.items():
        if only is None or name == only:
            importlib.import_module(module).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
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
