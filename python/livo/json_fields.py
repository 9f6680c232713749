"""Reading a JSON document that LiVO wrote (a dataset manifest, a value index's metadata) field by
field, each checked for the JSON type its reader relies on.

Why: such a file may be damaged, truncated by hand or edited, and a reader that indexes into it
directly fails with a ``TypeError`` wherever a field is first used, or loads a wrong number. Read
through :class:`JsonFields`, a missing or mistyped field is one :class:`~livo.errors.InputError`
naming the file and the field's path (``shards[3].rows``), in every command that reads it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from livo.errors import InputError


def json_type(value: object) -> str:
    """How an error names the JSON type of ``value``."""
    names = {dict: "a JSON object", list: "a list", str: "a string", bool: "true/false", type(None): "null"}
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN or Infinity"
    return names.get(type(value), "a number" if isinstance(value, int | float) else type(value).__name__)


def _described(value: object) -> str:
    """``value``'s JSON type, with the value itself when it is short to show ("a string ("high")")."""
    if value is None or isinstance(value, dict | list):
        return json_type(value)
    return f"{json_type(value)} ({json.dumps(value)[:40]})"


def _is_integer(value: object) -> bool:
    # JSON true/false are Python bools, which are ints: they are no number here.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    # Python's JSON reader takes NaN and Infinity, which no threshold or size may be.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class JsonFields:
    """One JSON object of a document, read field by field.

    ``what`` says what the file is when something is wrong ("corrupt index metadata"), ``advice``
    is appended to every error ("; rebuild the index"), ``where`` is this object's path in the
    document ("shards[3]"; empty at the top level). A field read with ``optional=True`` may be
    missing or null, and reads as None.
    """

    def __init__(self, path: str | Path, raw: Any, *, what: str, advice: str = "", where: str = "") -> None:
        self.path, self.what, self.advice, self.where = Path(path), what, advice, where
        if not isinstance(raw, dict):
            subject = f"field {where!r}" if where else "the top level"
            raise self._error(f"{subject} must be a JSON object, got {_described(raw)}")
        self.raw: dict[str, Any] = raw

    def _error(self, problem: str) -> InputError:
        return InputError(f"{self.path}: {self.what}: {problem}{self.advice}")

    def name(self, key: str) -> str:
        """The path of field ``key`` in the document (``shards[3].rows``)."""
        return f"{self.where}.{key}" if self.where else key

    def fail(self, key: str, problem: str) -> InputError:
        """An error about field ``key`` that its type alone does not show."""
        return self._error(f"field {self.name(key)!r} {problem}")

    def _checked(self, key: str, optional: bool, admits: Callable[[Any], bool], kind: str) -> Any:
        if key not in self.raw and not optional:
            raise self.fail(key, "is missing")
        value = self.raw.get(key)
        if value is None and optional:
            return None
        if not admits(value):
            raise self.fail(key, f"must be {kind}, got {_described(value)}")
        return value

    def text(self, key: str, optional: bool = False) -> Any:
        """A string (None when optional and absent)."""
        return self._checked(key, optional, lambda v: isinstance(v, str), "a string")

    def number(self, key: str, optional: bool = False) -> Any:
        """A number, integer or not (None when optional and absent)."""
        return self._checked(key, optional, _is_number, "a number")

    def integer(self, key: str, optional: bool = False) -> Any:
        """An integer (None when optional and absent)."""
        return self._checked(key, optional, _is_integer, "an integer")

    def flag(self, key: str) -> bool:
        """true or false."""
        return bool(self._checked(key, False, lambda v: isinstance(v, bool), "true or false"))

    def count(self, key: str, minimum: int = 0, maximum: int | None = None) -> int:
        """An integer from ``minimum`` (to ``maximum``)."""
        bound = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"

        def admits(value: Any) -> bool:
            return _is_integer(value) and value >= minimum and (maximum is None or value <= maximum)

        return int(self._checked(key, False, admits, f"an integer {bound}"))

    def ratio(self, key: str) -> float:
        """A number in (0, 1]."""
        return float(self._checked(key, False, lambda v: _is_number(v) and 0 < v <= 1, "a number in (0, 1]"))

    def mapping(self, key: str, optional: bool = False) -> Any:
        """A JSON object as a dict (None when optional and absent)."""
        return self._checked(key, optional, lambda v: isinstance(v, dict), "a JSON object")

    def items(self, key: str) -> list[Any]:
        """A list."""
        return list(self._checked(key, False, lambda v: isinstance(v, list), "a list"))

    def object(self, key: str) -> JsonFields:
        """The JSON object ``key``, to be read field by field."""
        return self._inner(self.mapping(key), self.name(key))

    def optional_object(self, key: str) -> JsonFields | None:
        """The JSON object ``key``, to be read field by field; None when it is missing or null."""
        value = self.mapping(key, optional=True)
        return None if value is None else self._inner(value, self.name(key))

    def each(self, key: str) -> list[JsonFields]:
        """The objects of the list ``key``, to be read field by field."""
        return [self._inner(item, f"{self.name(key)}[{i}]") for i, item in enumerate(self.items(key))]

    def texts(self, key: str) -> list[str]:
        """A list of strings."""
        values = self.items(key)
        for i, value in enumerate(values):
            if not isinstance(value, str):
                raise self._error(f"field {f'{self.name(key)}[{i}]'!r} must be a string, got {_described(value)}")
        return values

    def counts(self, key: str) -> tuple[int, ...]:
        """A list of integers >= 0."""
        values = self.items(key)
        wrong = next((v for v in values if not (_is_integer(v) and v >= 0)), None)
        if wrong is not None or any(v is None for v in values):
            raise self.fail(key, f"must be a list of integers >= 0, got {_described(wrong)} in it")
        return tuple(values)

    def numbers(self, key: str, optional: bool = False) -> dict[str, float] | None:
        """A JSON object whose every field is a number (None when optional and absent)."""
        inner = self.optional_object(key) if optional else self.object(key)
        return None if inner is None else {name: float(inner.number(name)) for name in inner.raw}

    def _inner(self, raw: Any, where: str) -> JsonFields:
        return JsonFields(self.path, raw, what=self.what, advice=self.advice, where=where)


__all__ = ["JsonFields", "json_type"]
