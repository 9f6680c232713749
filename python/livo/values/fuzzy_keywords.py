"""Harm keywords matched through obfuscated spellings and typos ("bl00dy", "n.a.k.e.d",
"zombei"), with real words kept apart ("baked" is not "naked", "laughter" is not "slaughter").

The Rust engine (:mod:`livo.values.robust_text`) undoes look-alike digits and symbols, spaced-out
and repeated letters, then matches each harm value's keywords within a small edit distance, after
its benign exception phrases ("blood orange") are set aside. A typo match is only a typo when the
word is not itself a real word, and which words are real depends on the keywords and the language.
The list comes from the vocabulary of the default embedder's tokenizer (about 20,000 whole English
words): every vocabulary word that the matcher would take for a keyword typo, and that is not a
keyword itself, is protected. So the protection follows the registry's keywords, whatever they are.
"""

from __future__ import annotations

from functools import lru_cache

from livo.values.registry import Registry
from livo.values.robust_text import KeywordHit, RobustKeywords


@lru_cache(maxsize=1)
def known_words() -> tuple[str, ...]:
    """Whole lower-case words of the default embedder's WordPiece vocabulary (empty when the
    package that ships it is missing: typo matching then protects nothing)."""
    from livo.errors import ConfigError
    from livo.values.embedders import minilm_path

    try:
        vocabulary = (minilm_path() / "vocab.txt").read_text(encoding="utf-8").splitlines()
    except (ConfigError, OSError):
        return ()
    return tuple(w for w in vocabulary if len(w) >= 3 and w.isalpha() and w.isascii())


class FuzzyKeywords:
    """The harm values' keywords of a registry on the robust normal form; ``match`` gives, per
    prompt, the ids of the harm values it mentions with the hit that decided each."""

    def __init__(self, registry: Registry) -> None:
        harm = [v for v in registry.values if v.kind == "harm" and v.keywords]
        self.value_ids = [v.id for v in harm]
        groups = [v.keywords for v in harm]
        exceptions = [v.keyword_exceptions for v in harm]
        words = known_words()
        if groups and words:
            probe = RobustKeywords(groups, exceptions)
            typos = [w for w, hits in zip(words, probe.match(words)) if any(h.distance > 0 for h in hits)]
        else:
            typos = []
        self.protected = typos
        self._matcher = RobustKeywords(groups, exceptions, typos) if groups else None

    def match(self, prompts: list[str]) -> list[dict[str, KeywordHit]]:
        if self._matcher is None:
            return [{} for _ in prompts]
        return [{self.value_ids[h.group]: h for h in hits} for hits in self._matcher.match(prompts)]
