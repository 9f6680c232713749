"""Value principles: the registry file that says which values exist, what text the value encoder
reads for each, and how the selector and the dataset builder recognise and rewrite prompts.

A registry is YAML validated by pydantic; every error names the file and the field, so a typo in a
hand-written registry is found at load time rather than as a silent mis-selection later.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from livo.config import StrictModel, format_validation_error, read_yaml
from livo.errors import ConfigError
from livo.value_types import ValueKind

_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"


# What the value selector's classifier predicts beside the harm values (is there a person?), so
# no value may take the name: its column would be one of two of that name.
RESERVED_IDS = frozenset({"person"})


def _clean_terms(terms: list[str]) -> list[str]:
    cleaned = [" ".join(t.split()) for t in terms]
    if any(not t for t in cleaned):
        raise ValueError("terms must be non-empty strings")
    return cleaned


def _matchable_terms(terms: list[str]) -> list[str]:
    """Harm keywords and their exceptions are matched on a normal form of letters and digits (look-
    alike symbols undone, the rest dropped): a term of none ("*", an emoji) would match nothing, and
    failed every later load of an index built from the registry instead of this one."""
    from livo.values.robust_text import normalize_robust

    terms = _clean_terms(terms)
    for term, normal in zip(terms, normalize_robust(terms)):
        if not normal:
            raise ValueError(f"{term!r} has no letters or digits, and keywords are matched on those")
    return terms


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be blank")
    return text


class AttributeClass(StrictModel):
    """One class of a protected attribute (e.g. ``female`` of ``gender``).

    ``words`` name the class on their own anywhere in a prompt ("woman", "latina"); ``modifiers``
    name it only directly before a person noun ("female doctor", "black nurse"), because colour
    words and adjectives are ambiguous elsewhere ("a white coat"). ``insert`` is the word the
    dataset builder inserts before the person noun to make the attribute explicit.
    """

    words: list[str] = Field(default_factory=list)
    modifiers: list[str] = Field(default_factory=list)
    insert: str = Field(min_length=1)

    _clean = field_validator("words", "modifiers")(_clean_terms)

    @model_validator(mode="after")
    def _has_terms(self) -> AttributeClass:
        if not self.words and not self.modifiers:
            raise ValueError("an attribute class needs at least one of 'words' or 'modifiers'")
        return self


class Exemplars(StrictModel):
    """Prompts the retrieval stage compares against: ``positive`` ones need this value, ``negative``
    ones look similar but do not (they veto a match that is closer to them than to a positive)."""

    positive: list[str] = Field(default_factory=list)
    negative: list[str] = Field(default_factory=list)

    _clean = field_validator("positive", "negative")(_clean_terms)


class ValuePrinciple(StrictModel):
    """One value: its id, the text fed to the value encoder, and how prompts are matched to it.

    A bias value's ``stated_words`` and ``stated_modifiers`` state its attribute without naming one
    of its classes (a nationality such as "a Finnish sailor" states race): the value is then not
    applied, as for a class word, but no class is implied."""

    id: str = Field(pattern=_ID_PATTERN)
    text: str = Field(min_length=1)  # what the value encoder reads
    kind: ValueKind
    attribute: str | None = None
    classes: dict[str, AttributeClass] | None = None
    exemplars: Exemplars = Field(default_factory=Exemplars)
    retrieval: bool = True
    keywords: list[str] = Field(default_factory=list)
    keyword_exceptions: list[str] = Field(default_factory=list)
    replacements: dict[str, str] = Field(default_factory=dict)
    stated_words: list[str] = Field(default_factory=list)
    stated_modifiers: list[str] = Field(default_factory=list)

    _clean = field_validator("stated_words", "stated_modifiers")(_clean_terms)
    _matchable = field_validator("keywords", "keyword_exceptions")(_matchable_terms)
    _text = field_validator("text")(_not_blank)

    @field_validator("id")
    @classmethod
    def _not_reserved(cls, value_id: str) -> str:
        if value_id in RESERVED_IDS:
            raise ValueError(
                f"{value_id!r} is reserved (the value selector predicts whether a prompt has a {value_id})"
            )
        return value_id

    @model_validator(mode="after")
    def _kind_fields(self) -> ValuePrinciple:
        if self.retrieval and not self.exemplars.positive:
            raise ValueError("retrieval needs exemplars.positive (or set 'retrieval: false' for a keyword-only value)")
        if self.kind == "bias":
            if not self.attribute:
                raise ValueError("a bias value needs 'attribute' (e.g. gender)")
            if not self.classes or len(self.classes) < 2:
                raise ValueError("a bias value needs 'classes' with at least two attribute classes")
            if self.keywords:
                raise ValueError("'keywords' is for harm values; bias values are found by retrieval")
        else:
            if self.attribute is not None or self.classes is not None:
                raise ValueError("'attribute' and 'classes' are only for bias values")
            if self.stated_words or self.stated_modifiers:
                raise ValueError("'stated_words' and 'stated_modifiers' are only for bias values")
            if not self.keywords and not self.retrieval:
                raise ValueError("a harm value without retrieval needs 'keywords'")
            if not self.replacements:
                raise ValueError("a harm value needs 'replacements' (harmful word -> replacement, '' removes)")
        return self


class Registry(StrictModel):
    """A set of value principles. Order matters: when several values of the same kind apply, the one
    listed first wins (harm values always win over bias values)."""

    name: str = Field(min_length=1)
    version: Literal[1] = 1
    person_nouns: list[str] = Field(min_length=1)
    # Phrases in which a person noun or attribute word names something else ("king penguin",
    # "cowboy boots", "german shepherd"): they are no evidence of a person.
    person_look_alikes: list[str] = Field(default_factory=list)
    benign_exemplars: list[str] = Field(default_factory=list)
    values: list[ValuePrinciple] = Field(min_length=1)

    _clean = field_validator("person_nouns", "person_look_alikes", "benign_exemplars")(_clean_terms)
    _name = field_validator("name")(_not_blank)

    @model_validator(mode="after")
    def _unique_ids(self) -> Registry:
        seen: set[str] = set()
        for value in self.values:
            if value.id in seen:
                raise ValueError(f"duplicate value id {value.id!r}")
            seen.add(value.id)
        return self

    def value(self, value_id: str) -> ValuePrinciple:
        for value in self.values:
            if value.id == value_id:
                return value
        raise KeyError(value_id)

    @property
    def ids(self) -> list[str]:
        return [v.id for v in self.values]

    def content_hash(self) -> str:
        """SHA-256 of the registry's canonical JSON: formatting and comments in the YAML do not
        change it, any change of meaning does."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def parse_registry(data: object, source: str = "<registry>") -> Registry:
    """Validates already-parsed YAML/JSON data; errors name ``source`` and each bad field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a registry is a mapping with 'name', 'person_nouns' and 'values'")
    # Show value ids instead of list positions in error locations where possible.
    try:
        return Registry.model_validate(data)
    except ValidationError as error:
        message = format_validation_error(source, error)
        values = data.get("values")
        if isinstance(values, list):
            for index, item in enumerate(values):
                if isinstance(item, dict) and isinstance(item.get("id"), str):
                    message = message.replace(f"field values.{index}.", f"field values[{item['id']}].")
                    message = message.replace(f"field values.{index}:", f"field values[{item['id']}]:")
        raise ConfigError(message) from None


def load_registry(path: str | os.PathLike[str]) -> Registry:
    """Reads and validates a registry YAML file."""
    return parse_registry(read_yaml(path, "registry file"), str(path))


def default_registry_path() -> Path:
    """The registry shipped with this package for SD-style models (the ``livo.registries`` plug-in
    ``default``)."""
    return Path(str(resources.files("livo.values") / "registry" / "default.yaml"))


def builtin_registry_path(name: str = "default") -> Path:
    """Path of a built-in registry: an installed ``livo.registries`` plug-in (``default``, SD-style
    values; ``toyworld``, the toy world's)."""
    from livo.plugins import REGISTRIES, load_plugin

    return Path(load_plugin(REGISTRIES, name)())


def resolve_registry_path(spec: str | os.PathLike[str]) -> Path:
    """A file path, or ``builtin:NAME`` / a bare built-in name such as ``default``."""
    text = str(spec)
    if text.startswith("builtin:"):
        return builtin_registry_path(text.removeprefix("builtin:"))
    path = Path(text)
    if not path.exists() and "/" not in text and not path.suffix:
        return builtin_registry_path(text)
    return path
