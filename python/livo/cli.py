"""The ``livo`` command. Each stage registers its own sub-commands; heavy libraries (torch, ray,
diffusers) are imported only by the sub-command that runs, so ``livo dedup`` starts instantly."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

# Modules exposing ``register(subparsers)``; each adds its sub-commands with ``set_defaults(run=...)``.
COMMAND_MODULES = [
    "livo.data.dedup_command",
    "livo.data.shards_command",
    "livo.toyworld.commands",
    "livo.values.commands",
    "livo.train.commands",
    "livo.eval.commands",
    "livo.dataset.commands",
    "livo.serve.commands",
    "livo.demo",
]


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Adds ``(default: X)`` to an option's help when it has a default worth showing (not None,
    False or empty) and the help text does not already say what the default is."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if not action.option_strings or default in (None, False, argparse.SUPPRESS) or default == []:
            return text
        if "default" in text.lower() or "%(default)" in text:
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


class LivoArgumentParser(argparse.ArgumentParser):
    """Every parser of the ``livo`` command, sub-commands included (argparse creates them with the
    parent's class): help texts show defaults."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]


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
