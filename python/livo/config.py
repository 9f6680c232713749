"""The config toolkit every stage's typed configuration is built on.

- :class:`StrictModel`: a frozen pydantic model whose unknown keys are errors.
- :func:`parse_model`: validate a mapping; errors are one :class:`~livo.errors.ConfigError`, one line
  per problem, naming the field.
- :func:`load_yaml`: read a YAML file (a missing file is an :class:`~livo.errors.InputError`), resolve
  its relative paths against the file's folder (:func:`resolve_paths`), apply dotted overrides
  (``--set a.b=c`` on every command; paths given there are relative to the working directory, as
  command-line paths are), validate into a model.
- :func:`format_validation_error`: the one error format, ``SOURCE: field a.b: what is wrong``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from livo.errors import ConfigError, InputError
from livo.overrides import set_dotted
from livo.yaml_text import parse_yaml

Model = TypeVar("Model", bound=BaseModel)


def format_validation_error(
    source: str,
    error: ValidationError,
    flags: Mapping[str, str] | None = None,
    overridden: Collection[str] | Mapping[str, str] = (),
) -> str:
    """One line per problem: ``SOURCE: field a.b: what is wrong``; a field that a command-line flag
    also sets names the flag (``flags`` maps dotted fields to flags), since the user may have used it,
    and a field that an override wrote names the override, since the file itself may not hold it.
    ``overridden`` is the dotted keys of ``--set`` overrides, or a mapping of each dotted key to what
    the user wrote to set it (a command that sets fields of another config for the user, as the demo
    does, names its own setting; such a name is used before a flag's, as the caller knows it)."""
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        flag = (flags or {}).get(where)
        override = next((key for key in overridden if _same_field(key, where)), None)
        if override is not None and isinstance(overridden, Mapping):
            hint = f" (set by {overridden[override]})"
        elif flag and override is not None:  # the value came from the flag or a --set, not the file
            hint = f" (set by {flag} or --set {override})"
        elif flag:
            hint = f" (give {flag} on the command line, or set {where} in the config)"
        elif override is not None:
            hint = f" (set by --set {override})"
        else:
            hint = ""
        lines.append(f"{source}: field {where}: {item['msg']}{hint}")
    return "\n".join(lines)


def _same_field(key: str, where: str) -> bool:
    """Whether the override ``key`` wrote the field ``where``: the same field, one inside it, or the
    new section it created (``--set trian.steps=5`` fails as the unknown field ``trian``)."""
    return key == where or key.startswith(f"{where}.") or where.startswith(f"{key}.")


class StrictModel(BaseModel):
    """A config section: unknown keys are errors (a typo fails at load time, not after an hour of
    work) and a loaded config is immutable. Loaded through :func:`parse_model` / :func:`load_yaml`,
    an invalid one raises :class:`ConfigError` naming each field; built directly in Python, pydantic's
    ``ValidationError`` (also a ``ValueError``). ``inf`` and ``nan`` are refused in every number
    field: a bound such as ``ge=0`` admits ``inf``, and a training run took it and saved NaN weights."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def read_yaml(path: str | os.PathLike[str], what: str = "config") -> dict[str, Any]:
    """The mapping in a YAML file (:func:`livo.yaml_text.parse_yaml`: a repeated key is an error);
    ``what`` names the kind of file in errors."""
    file = Path(path)
    if not file.exists():
        raise InputError(f"{file}: {what} not found")
    if not file.is_file():
        raise InputError(f"{file}: {what} is not a file")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise InputError(f"{file}: {what} is not UTF-8 text ({error.reason} at byte {error.start})") from None
    data = parse_yaml(text, str(file))
    if data is None:
        return {}
    if not isinstance(data, dict):
        article = "an" if what[:1] in "aeiou" else "a"
        raise ConfigError(f"{file}: {article} {what} is a mapping of fields to values, got {type(data).__name__}")
    return data


def resolve_paths(
    data: Any,
    base: Path,
    keys: Collection[str],
    keys_if_present: Collection[str] = (),
    kind_keys: Collection[str] = (),
) -> Any:
    """``data`` with its relative paths made relative to ``base`` (the folder of the YAML file that
    holds them), so a config means the same files whatever the working directory: every string under
    one of ``keys``, at any depth (``runs/lr:1e-5`` too; a URL, ``scheme://...``, is left alone);
    under ``keys_if_present`` only when that file or folder exists in ``base`` (those fields also
    take names that are no paths: a hub id, ``builtin:NAME``, a built-in registry); under
    ``kind_keys`` (``KIND:PATH``, e.g. ``torchscript:models/net.pt``) the path after the kind, when it
    exists in ``base``."""
    if isinstance(data, dict):
        resolved = {}
        for key, value in data.items():
            if isinstance(value, str) and value.startswith("~"):
                value = os.path.expanduser(value)  # "~/runs/x" is the home folder's, not <config folder>/~
            if isinstance(value, str) and value and not os.path.isabs(value) and not _URL.match(value):
                candidate = base / value
                kind, colon, rest = value.partition(":")
                if key in keys or (key in keys_if_present and candidate.exists()):
                    value = str(candidate)
                elif key in kind_keys and colon and rest:
                    rest = os.path.expanduser(rest)
                    if not os.path.isabs(rest) and (base / rest).exists():
                        value = f"{kind}:{base / rest}"
            resolved[key] = resolve_paths(value, base, keys, keys_if_present, kind_keys)
        return resolved
    if isinstance(data, list):
        return [resolve_paths(item, base, keys, keys_if_present, kind_keys) for item in data]
    return data


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def apply_overrides(data: dict[str, Any], overrides: Mapping[str, Any] | None, source: str) -> dict[str, Any]:
    """``data`` with each dotted override set (``{"eval.every": 50}``). None is a value like any other
    (``--set judges.subject=null`` turns the subject check off); flags that were not given are left
    out by the caller (``livo.overrides.given_flags``)."""
    for key, value in (overrides or {}).items():
        set_dotted(data, key, value, source)
    return data


def parse_model(
    model: type[Model],
    data: Any,
    source: str,
    flags: Mapping[str, str] | None = None,
    *,
    overridden: Collection[str] | Mapping[str, str] = (),
) -> Model:
    """``data`` validated into ``model``; errors name ``source`` and each field (and the flag that
    sets it, from ``flags``: dotted field → flag; or the ``--set`` key in ``overridden`` that wrote it)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping of fields to values, got {type(data).__name__}")
    try:
        return model.model_validate(dict(data))
    except ValidationError as error:
        raise ConfigError(format_validation_error(source, error, flags, overridden)) from None


def load_yaml(
    path: str | os.PathLike[str],
    model: type[Model],
    overrides: Mapping[str, Any] | None = None,
    *,
    what: str = "config",
    path_keys: Collection[str] = (),
    path_keys_if_present: Collection[str] = (),
    flags: Mapping[str, str] | None = None,
) -> Model:
    """A YAML file validated into ``model``: its relative paths resolved against its folder
    (:func:`resolve_paths`), then the dotted ``overrides`` applied."""
    data = resolve_paths(read_yaml(path, what), Path(path).parent, path_keys, path_keys_if_present)
    data = apply_overrides(data, overrides, str(path))
    return parse_model(model, data, str(path), flags, overridden=list(overrides or {}))
