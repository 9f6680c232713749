"""Dotted ``--set`` overrides of a YAML config, shared by the commands that take a config file."""

from __future__ import annotations

from typing import Any

from livo.errors import ConfigError
from livo.yaml_text import parse_yaml, yaml_comment_start


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


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``--set FIELD=VALUE`` arguments as ``{dotted field: value}``, each value parsed as YAML."""
    overrides: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name or "" in name.split("."):
            raise ConfigError(f"--set {item!r}: expected FIELD=VALUE, e.g. generation.steps=10")
        # A repeated field moves to its latest place: applied in order, a whole-section --set given
        # in between would otherwise wipe it.
        overrides.pop(name, None)
        comment = yaml_comment_start(text)
        if comment is not None:
            raise ConfigError(
                f"--set {item}: its '#' starts a YAML comment, which would cut the value there; quote the value, e.g. "
                f"""--set '{name}="{text.strip()}"'"""
            )
        overrides[name] = parse_yaml(text, f"--set {item}")
    return overrides


def given_flags(flags: dict[str, Any]) -> dict[str, Any]:
    """The flags a user gave, as dotted overrides: those left at None (not given) are dropped, so they
    neither mask a ``--set`` of the same field nor erase the config's value."""
    return {key: value for key, value in flags.items() if value is not None}
