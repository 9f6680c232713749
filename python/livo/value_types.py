"""The value a prompt gets, as every stage passes it around: :class:`ValueChoice`, and the
:class:`Selector` contract that produces it. Light on purpose (no torch): value selection, the
pipeline, dataset construction and the service all import it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from livo.errors import ConfigError

ValueKind = Literal["bias", "harm"]
KINDS: tuple[str, ...] = ("bias", "harm")


@dataclass(frozen=True)
class ValueChoice:
    """A value principle chosen for a prompt: its ``id`` in the value registry (what outputs record),
    its ``text`` (what the value encoder reads, e.g. "gender equality") and its ``kind`` ("bias" or
    "harm")."""

    id: str
    text: str
    kind: ValueKind = "harm"

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            raise ConfigError(f"value id: a non-empty string, got {self.id!r}")
        if not isinstance(self.text, str):
            raise ConfigError(f"value {self.id!r}: text: a string, got {type(self.text).__name__}")
        if self.kind not in KINDS:
            raise ConfigError(f"value {self.id!r}: kind: expected 'bias' or 'harm', got {self.kind!r}")
        if not self.text.strip():
            raise ConfigError(f"value {self.id!r}: text: a value principle must not be empty")


@runtime_checkable
class Selector(Protocol):
    """Decides, per prompt, which value applies (None: none)."""

    def __call__(self, prompt: str) -> ValueChoice | None: ...


@runtime_checkable
class BatchSelector(Selector, Protocol):
    """A selector that also answers for many prompts at once (one embedding pass, say)."""

    def choose_many(self, prompts: Sequence[str]) -> list[ValueChoice | None]: ...


@runtime_checkable
class MultiValueSelector(Selector, Protocol):
    """A selector that finds every value that applies to a prompt, in order (harm values first).
    A pipeline that applies one value per prompt applies the first."""

    def choose_all(self, prompts: Sequence[str]) -> list[list[ValueChoice]]: ...
