"""Robust text for the keyword stage of value selection (the Rust engine, with a typed front).

Prompt logs spell harmful words so that filters miss them and people (and text encoders) still
read them: "bl00dy", "n@ked", "b.l.o.o.d", "n a k e d", "bloooody", "zombei". A keyword list
matched on plain lower-cased text misses all of these. :func:`normalize_robust` undoes those
spellings (look-alike digits and symbols inside words, spaced-out letters, repeated letters,
accents, look-alike Cyrillic and Greek letters, invisible characters) while leaving numbers and
tags such as "1990", "4k" and "35mm" alone; :class:`RobustKeywords` matches groups of terms on that
form with word boundaries, benign exception phrases and a bounded edit distance for typos.

The rules, and why each exists, are documented in the engine (``crates/livo-data/src/robust_text``).
Both calls take a whole batch, release the GIL and spread large batches over the cores, so they
cost little next to the embedding stage that follows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from livo import _native


def _text_list(texts: Sequence[str]) -> list[str]:
    # A str is a Sequence[str] of characters: almost surely a caller's slip, never a batch.
    if isinstance(texts, str):
        raise TypeError("texts: expected a sequence of str, got a single str (wrap it in a list)")
    return texts if isinstance(texts, list) else list(texts)


def normalize_robust(texts: Sequence[str]) -> list[str]:
    """The robust normal form of each text, in order: what :class:`RobustKeywords` matches on.

    Deterministic and a fixed point (normalising a normalised text changes nothing), so the form
    can be stored and matched later.
    """
    return _native.normalize_robust(_text_list(texts))


@dataclass(frozen=True)
class KeywordHit:
    """A group a text mentions, with the occurrence that decided it."""

    group: int
    """Index of the group in the ``groups`` the matcher was built from."""
    term: str
    """The term that matched, as it was written in ``groups``."""
    matched: str
    """The matched words as they are in the text's robust normal form."""
    distance: int
    """0 for an exact (or prefix) match, else the edit distance of the typo."""


class RobustKeywords:
    """Groups of keyword terms (one group per value) matched on the robust normal form.

    ``groups[g]`` are the terms of group ``g``: whole words, several words ("blood splatter"), or a
    prefix of the last word ending in ``*`` ("zombi*"). ``exceptions[g]`` are group ``g``'s benign
    phrases ("blood orange"), one list per group: a term occurrence inside one of them does not
    count, whatever the spelling ("bl00d orange"). Terms of at least ``fuzzy_min_len`` characters
    also match a typo within one edit, of at least ``fuzzy2_min_len`` within two; ``protected``
    lists real words that must never count as such a typo ("baked" for "naked", "blond" for
    "blood"): which words those are depends on the terms and the language, so the caller says.

    Invalid input (a term with no word left after normalisation, an exception list missing, a
    protected entry of several words, lengths out of range) raises
    :class:`livo.errors.InvalidParameterError` naming it.
    """

    def __init__(
        self,
        groups: Sequence[Sequence[str]],
        exceptions: Sequence[Sequence[str]],
        protected: Sequence[str] = (),
        fuzzy_min_len: int = 5,
        fuzzy2_min_len: int = 8,
    ) -> None:
        self._matcher = _native.KeywordMatcher(
            [_text_list(g) for g in groups],
            [_text_list(e) for e in exceptions],
            _text_list(protected),
            fuzzy_min_len,
            fuzzy2_min_len,
        )

    @property
    def group_count(self) -> int:
        """Number of groups."""
        return self._matcher.group_count

    def match(self, texts: Sequence[str]) -> list[list[KeywordHit]]:
        """Per text, one hit per group it mentions, in group order. Within a group the closest
        occurrence wins (exact before typo), then the earliest, then the term listed first."""
        rows = self._matcher.match_batch(_text_list(texts))
        return [[KeywordHit(*hit) for hit in row] for row in rows]


__all__ = ["KeywordHit", "RobustKeywords", "normalize_robust"]
