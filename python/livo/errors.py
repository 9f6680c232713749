"""Exceptions raised by LiVO. Every message names the input and what is wrong with it.

This module is the one public import point of LiVO's exceptions. All of them derive from
:class:`LivoError`; each also derives from the builtin class it refines (``ValueError`` or
``OSError``), so ``except ValueError`` keeps catching them. The Rust engine (``livo._native``)
raises the classes defined here and exports them under the same names
(``livo._native.InvalidParameterError is livo.errors.InvalidParameterError``).

I/O errors on the user's own paths (``FileNotFoundError``, ``PermissionError``, other ``OSError``)
are raised as the builtin classes: they are not LiVO errors.
"""

# No imports from livo._native here: the engine imports this module while it initialises.

import sys
from collections.abc import Callable


class LivoError(Exception):
    """Base class of LiVO's own errors."""


class InputError(LivoError, ValueError):
    """An input file or value cannot be used as given (bad format, missing column, wrong type)."""


class ConfigError(LivoError, ValueError):
    """A configuration is invalid; the message names the field."""


class PeerTimeoutError(LivoError, TimeoutError):
    """A training rank waited longer than ``collective_timeout_s`` for the others; the message says
    what to do."""


# Raised by the Rust engine (crates/livo-py/src/errors.rs maps each engine error to one of these).


class InvalidParameterError(LivoError, ValueError):
    """A parameter is outside its valid range; the message names it."""


class InvalidUtf8Error(InputError):
    """A text input is not valid UTF-8; the message names the file and line. An input error, so
    whatever reports a bad input (naming the source it came from) reports this one too."""


class ManifestError(LivoError, ValueError):
    """A dataset manifest is malformed or does not fit the writer's settings; the message names it."""


class SchemaMismatchError(LivoError, ValueError):
    """Written rows lack a required column or differ from the dataset's columns; the message names it."""


class DatasetLockedError(LivoError, OSError):
    """Another writer holds the dataset directory."""


class ParquetFileError(LivoError, OSError):
    """A Parquet file could not be written or read; the message names it."""


__all__ = [
    "LivoError",
    "InputError",
    "ConfigError",
    "PeerTimeoutError",
    "InvalidParameterError",
    "InvalidUtf8Error",
    "ManifestError",
    "SchemaMismatchError",
    "DatasetLockedError",
    "ParquetFileError",
]


# A user's mistake: a LiVO error, or a path that is missing, unreadable or of the wrong kind.
USER_ERRORS: tuple[type[BaseException], ...] = (
    LivoError,
    FileNotFoundError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
    FileExistsError,
)


def run_command(command: str, run: Callable[[], int | None]) -> int:
    """Runs a command's body the way every ``livo`` command ends: a user's mistake
    (:data:`USER_ERRORS`) is one line on stderr, ``livo COMMAND: error: ...``, and exit code 2; Ctrl-C
    is exit code 130; anything else, a bare ``ValueError`` included, is a bug and keeps its traceback."""
    try:
        return int(run() or 0)
    except USER_ERRORS as error:
        print(f"livo {command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"livo {command}: interrupted", file=sys.stderr)
        return 130
