"""Dotted ``--set`` overrides of a YAML config, shared by the commands that take a config file."""

from __future__ import annotations

from typing import Any

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
