"""Dotted ``--set`` overrides of a YAML config, shared by the commands that take a config file."""

from __future__ import annotations

import os
from typing import Any

import yaml

from livo.errors import ConfigError


def set_dotted(values: dict[str, Any], key: str, value: Any, where: str) -> None:
    """``set_dotted(v, "eval.every", 5, ...)`` sets ``v["eval"]["every"] = 5``, creating missing
    mappings; ``where`` names the config in the error raised when a parent is not a mapping."""
    *parents, last = key.split(".")
    target = values
    for part in parents:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise ConfigError(f"{where}: --set {key}: {part} is not a mapping")
    target[last] = value


def check_scalar_types(cls: type, values: dict[str, Any], where: str) -> dict[str, Any]:
    """Check the ``int`` / ``float`` / ``bool`` / ``str`` fields of dataclass ``cls`` in ``values``
    and return a copy with ints widened to float where a float is expected.

    Why: PyYAML reads YAML 1.1, where ``1e-6`` (no dot) is a *string*; users write learning rates
    that way, so a float field also takes a string that Python reads as a float. Anything else of
    the wrong type is a :class:`ConfigError` naming the key, instead of a ``TypeError`` later.
    """
    import typing

    hints = typing.get_type_hints(cls)
    checked = dict(values)
    for name, value in values.items():
        hint = hints.get(name)
        if hint is float and not isinstance(value, bool):
            if isinstance(value, (int, float)):
                checked[name] = float(value)
                continue
            if isinstance(value, str):
                try:
                    checked[name] = float(value)
                    continue
                except ValueError:
                    pass
            raise ConfigError(f"{where}: {name} must be a number, got {value!r}")
        if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"{where}: {name} must be an integer, got {value!r}")
        if hint is bool and not isinstance(value, bool):
            raise ConfigError(f"{where}: {name} must be true or false, got {value!r}")
        if hint is str and isinstance(value, os.PathLike):
            checked[name] = os.fspath(value)
        elif hint is str and not isinstance(value, str):
            raise ConfigError(f"{where}: {name} must be a string, got {value!r}")
    return checked


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``--set FIELD=VALUE`` arguments as ``{dotted field: value}``, each value parsed as YAML."""
    overrides: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--set {item!r}: expected FIELD=VALUE, e.g. generation.steps=10")
        overrides[name.strip()] = yaml.safe_load(text)
    return overrides
