"""YAML text as LiVO reads it: configs, registries and ``--set`` values.

PyYAML's safe loader follows YAML 1.1: ``seed: 0042`` is 34 (octal), ``1:30`` is 90 (base 60),
``name: off`` and a keyword ``no`` are booleans, ``2026-12-06`` a date, and ``1e-3`` a string. A
config's value is read here as YAML 1.2's core schema reads it (what a user who writes it means,
and what most YAML readers do now): ``0042`` is 42, ``true``/``false`` are the only booleans,
``1e-3`` is a number, the rest is text. PyYAML also keeps the last of two equal keys in a mapping
without a word, so a config that sets ``max_steps`` twice, or a registry with two ``keywords``
lists, would lose one silently; and its errors run over several lines. :func:`parse_yaml` refuses
a repeated key and says what is wrong in one line, naming the file (or flag) and the place.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Hashable
from typing import Any

from livo.errors import ConfigError

# YAML 1.2's core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution).
_CORE_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_CORE_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_CORE_FLOAT = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_BOOL, _INT, _FLOAT = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"


def parse_yaml(text: str, where: str) -> Any:
    """``text`` parsed by the safe loader with YAML 1.2's core schema, a key given twice in one
    mapping refused; errors are a :class:`~livo.errors.ConfigError` of one line naming ``where``
    and the line and column."""
    import yaml

    try:
        return yaml.load(text, Loader=_config_loader())
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        place = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = " ".join(str(error.problem or error.context or "").split())
        raise ConfigError(f"{where}: not valid YAML: {place}{problem}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{where}: not valid YAML: {' '.join(str(error).split())}") from None
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as error:
        # An explicit tag on a value it cannot build ("!!int abc", "!!set [1]").
        raise ConfigError(f"{where}: not valid YAML: a tagged value cannot be read: {error}") from None


def yaml_comment_start(text: str) -> int | None:
    """Where a comment starts in one YAML value's ``text`` (`` #`` outside quotes), or None: a
    ``--set output=runs/exp #2`` would otherwise be read as ``runs/exp`` without a word."""
    import yaml

    try:
        spans = [(token.start_mark.index, token.end_mark.index) for token in yaml.scan(text)]
    except yaml.YAMLError:
        return None  # parse_yaml reports it
    for position, character in enumerate(text):
        if character == "#" and not any(start <= position < end for start, end in spans):
            return position
    return None


def _core_int(loader: Any, node: Any) -> int:
    value = loader.construct_scalar(node)
    if value.startswith("0o"):
        return int(value[2:], 8)
    return int(value, 16) if value.startswith("0x") else int(value, 10)


def _core_float(loader: Any, node: Any) -> float:
    value = loader.construct_scalar(node).lower()
    if value.endswith((".inf", ".nan")):
        return float(value.replace(".", ""))
    return float(value)


def _core_bool(loader: Any, node: Any) -> bool:
    value = loader.construct_scalar(node)
    if value.lower() not in ("true", "false"):  # "!!bool maybe"
        raise ValueError(f"{value!r} is not true or false")
    return bool(value.lower() == "true")


@functools.cache
def _config_loader() -> type:
    """A SafeLoader subclass (made on first use: PyYAML is imported only by commands that read YAML)
    with the core schema's scalars and no repeated keys."""
    import yaml

    class ConfigLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # "<<: *base": the mapping's own keys may override the merged ones
                key = self.construct_object(key_node, deep=deep)
                if isinstance(key, Hashable):
                    if key in seen:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"key {key!r} is given twice in one mapping", key_node.start_mark
                        )
                    seen.add(key)
            return super().construct_mapping(node, deep=deep)

    # YAML 1.1's implicit booleans, numbers, dates and "=" go; null and the merge key stay.
    dropped = {_BOOL, _INT, _FLOAT, "tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value"}
    ConfigLoader.yaml_implicit_resolvers = {
        first: [(tag, pattern) for tag, pattern in resolvers if tag not in dropped]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    ConfigLoader.add_implicit_resolver(_BOOL, _CORE_BOOL, list("tTfF"))
    ConfigLoader.add_implicit_resolver(_INT, _CORE_INT, list("-+0123456789"))
    ConfigLoader.add_implicit_resolver(_FLOAT, _CORE_FLOAT, list("-+0123456789."))
    ConfigLoader.add_constructor(_INT, _core_int)
    ConfigLoader.add_constructor(_FLOAT, _core_float)
    ConfigLoader.add_constructor(_BOOL, _core_bool)
    return ConfigLoader


__all__ = ["parse_yaml", "yaml_comment_start"]
