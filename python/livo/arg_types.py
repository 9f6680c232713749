"""Argument types for the commands' numeric flags, so a bad value is argparse's one-line usage error
(``argument --threads: must be an integer >= 1, got '-1'``) rather than a failure deep in the work."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from livo.errors import ConfigError

# The largest integer a flag takes unless it says otherwise: what the native code and numpy hold
# (a larger one failed deep in the work with an OverflowError).
INT64_MAX = 2**63 - 1


def int_at_least(minimum: int, maximum: int = INT64_MAX) -> Callable[[str], int]:
    """An ``int`` flag type that refuses values below ``minimum`` or above ``maximum``."""
    expected = f"an integer >= {minimum}" if maximum == INT64_MAX else f"an integer from {minimum} to {maximum}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}")
        if value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum}, got {text!r}")
        return value

    parse.__name__ = f"int>={minimum}"
    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)
# Seeds as numpy's legacy generator and most tools take them.
seed_int = int_at_least(0, 2**32 - 1)
# Threads of one process: more than any machine's cores only slows the work down.
thread_count = int_at_least(1, 1024)
port_number = int_at_least(1, 65535)


def float_where(expected: str, admits: Callable[[float], bool]) -> Callable[[str], float]:
    """A ``float`` flag type that refuses values ``admits`` does not (``expected`` says which it
    takes in the error). ``nan`` and ``inf`` parse as floats: ``admits`` must refuse them where they
    would run (``nan`` fails every comparison, so a bound refuses it)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}") from None
        if not admits(value):
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}")
        return value

    parse.__name__ = "float"
    return parse


fraction = float_where("a number in (0, 1]", lambda value: 0.0 < value <= 1.0)
# A guidance scale: inf would run.
non_negative_float = float_where("a number >= 0", lambda value: math.isfinite(value) and value >= 0)
# nan failed later, as the recipe's field rather than the flag.
learning_rate = float_where("a number in (0, 1)", lambda value: 0.0 < value < 1.0)


# Images per prompt of an evaluation or report: the largest a run could hold and finish; more was a
# MemoryError after the models loaded.
MAX_IMAGES_PER_PROMPT = 10_000
images_per_prompt = int_at_least(1, MAX_IMAGES_PER_PROMPT)
# Training pairs per subject or prompt of the toy world: far past any recipe (hundreds), and short of
# a dataset that would fill the disk before its first shard.
pair_count = int_at_least(0, 1_000_000)


UNITS = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "kb": 1 << 10,
    "kib": 1 << 10,
    "m": 1 << 20,
    "mb": 1 << 20,
    "mib": 1 << 20,
    "g": 1 << 30,
    "gb": 1 << 30,
    "gib": 1 << 30,
}


def parse_size(text: str) -> int:
    """``256MiB``, ``64M``, ``1g`` or a plain byte count (units are powers of 1024)."""
    stripped = text.strip().lower()
    number = stripped.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = stripped[len(number) :]
    try:
        value = float(number) * UNITS[unit]
    except (ValueError, KeyError):
        raise ConfigError(f"size {text!r}: expected a number with an optional unit (K, M, G, MiB)") from None
    if not math.isfinite(value):  # "1e400"
        raise ConfigError(f"size {text!r}: not a finite number")
    if value < 1:
        raise ConfigError(f"size {text!r}: must be at least 1 byte")
    return int(value)


def byte_size_at_most(maximum: int) -> Callable[[str], int]:
    """A size flag type (``64M``, ``1GiB``, a byte count) up to ``maximum`` bytes."""

    def parse(text: str) -> int:
        try:
            value = parse_size(text)
        except ConfigError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        if value > maximum:
            raise argparse.ArgumentTypeError(f"size {text!r}: must be at most {maximum / (1 << 30):g} GiB")
        return value

    parse.__name__ = "size"
    return parse


byte_size = byte_size_at_most(INT64_MAX)
