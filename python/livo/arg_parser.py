"""The argument parser of every ``livo`` command (and of ``python -m livo.train``).

Help texts show each option's default; a usage mistake is one line, ``livo dedup: error: argument
--threads: must be an integer >= 1, got '-1' (see livo dedup --help)``, and exit status 2, like
every other user mistake (``livo.errors.run_command``).
"""

from __future__ import annotations

import argparse
from typing import Any, NoReturn


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Adds ``(default: X)`` to an option's help when it has a default worth showing (not None,
    False or empty) and the help text does not already say what the default is."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        # By identity: 0 == False, and a default of 0 (a seed) is worth showing.
        if not action.option_strings or default is None or default is False or default == argparse.SUPPRESS:
            return text
        if isinstance(default, list) and not default:
            return text
        if "default" in text.lower() or "%(default)" in text:
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


class LivoArgumentParser(argparse.ArgumentParser):
    """Every parser of the ``livo`` command, sub-commands included (argparse creates them with the
    parent's class): help texts show defaults, and a usage error is one line."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def add_subparsers(self, **kwargs: Any) -> Any:
        kwargs.setdefault("parser_class", SubcommandParser)
        return super().add_subparsers(**kwargs)


class SubcommandParser(LivoArgumentParser):
    """A sub-command's parser: an option it does not know is its own error (``livo dedup: error:
    unrecognized arguments: --thresold 0.5 (see livo dedup --help)``), not the top-level parser's,
    which would point at ``livo --help``."""

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras
