"""The config toolkit every stage's typed configuration is built on.

- :class:`StrictModel`: a frozen pydantic model whose unknown keys are errors.
- :func:`parse_model`: validate a mapping; errors are one :class:`~livo.errors.ConfigError`, one line
  per problem, naming the field.
- :func:`load_yaml`: read a YAML file (a missing file is an :class:`~livo.errors.InputError`), apply
  dotted overrides (``--set a.b=c`` on every command), validate into a model.
- :func:`format_validation_error`: the one error format, ``SOURCE: field a.b: what is wrong``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from livo.errors import ConfigError, InputError
from livo.overrides import set_dotted

Model = TypeVar("Model", bound=BaseModel)


def format_validation_error(source: str, error: ValidationError) -> str:
    """One line per problem: ``SOURCE: field a.b: what is wrong``."""
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"{source}: field {where}: {item['msg']}")
    return "\n".join(lines)


class StrictModel(BaseModel):
    """A config section: unknown keys are errors (a typo fails at load time, not after an hour of
    work) and a loaded config is immutable. Loaded through :func:`parse_model` / :func:`load_yaml`,
    an invalid one raises :class:`ConfigError` naming each field; built directly in Python, pydantic's
    ``ValidationError`` (also a ``ValueError``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def read_yaml(path: str | os.PathLike[str], what: str = "config") -> dict[str, Any]:
    """The mapping in a YAML file; ``what`` names the kind of file in errors."""
    import yaml

    file = Path(path)
    if not file.exists():
        raise InputError(f"{file}: {what} not found")
    if not file.is_file():
        raise InputError(f"{file}: {what} is not a file")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise InputError(f"{file}: {what} is not UTF-8 text ({error.reason} at byte {error.start})") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{file}: not valid YAML: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: a {what} is a mapping of fields to values, got {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: Mapping[str, Any] | None, source: str) -> dict[str, Any]:
    """``data`` with each dotted override set (``{"eval.every": 50}``; None values are skipped)."""
    for key, value in (overrides or {}).items():
        if value is not None:
            set_dotted(data, key, value, source)
    return data


def parse_model(model: type[Model], data: Any, source: str) -> Model:
    """``data`` validated into ``model``; errors name ``source`` and each field."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping of fields to values, got {type(data).__name__}")
    try:
        return model.model_validate(dict(data))
    except ValidationError as error:
        raise ConfigError(format_validation_error(source, error)) from None


def load_yaml(
    path: str | os.PathLike[str],
    model: type[Model],
    overrides: Mapping[str, Any] | None = None,
    *,
    what: str = "config",
) -> Model:
    """A YAML file validated into ``model`` after the dotted ``overrides``."""
    return parse_model(model, apply_overrides(read_yaml(path, what), overrides, str(path)), str(path))
