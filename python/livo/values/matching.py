"""Rule stages of value selection: harm keywords and explicit protected attributes.

Matching works on NFKC-normalised, case-folded text, with emoji written out as words
(:mod:`livo.values.emoji_words`), and Unicode word boundaries, so "dead" never
fires inside "deadline" and "sex" never inside "Sussex", while "ZOMBIE" and "ｚｏｍｂｉｅ" still match.
A term ending in ``*`` matches any word starting with it ("zombi*" finds "zombies", "zombified").
Benign phrases that contain a keyword ("blood orange") are listed as exceptions and blanked out
before keywords are looked for.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from livo.values.emoji_words import spell_out_emoji
from livo.values.registry import Registry, ValuePrinciple

_BOUNDARY_START = r"(?<!\w)"
_BOUNDARY_END = r"(?!\w)"
_NOT_POSSESSIVE = r"(?!\s*['’]s?(?!\w))"
# A colour word before a word of hair, eyes or clothing ("a black haired girl", "a white robed
# priest", "a black hooded assassin") describes those, not who the person is; written with a hyphen
# ("black-haired") it was never read as a modifier.
_DESCRIBES_APPEARANCE = (
    r"(?![\s\-]+(?:hair|haired|eyed|hooded|robed|cloaked|clad|coat|coated|suit|suited|dressed|masked|gloved"
    r"|armou?red)(?!\w))"
)
UNLISTED_CLASS = "unlisted"


# Stable Diffusion's prompt syntax, read as the words it holds: extra-network tags ("<lora:name:0.8>")
# name files, not content; attention weights ("(female:1.2)"), emphasis brackets ("((blood))",
# "[red]", "{red}") and prompt editing ("[man:woman:0.5]", "[cat|dog]") wrap words; Danbooru tags
# join words with "_" ("female_doctor", "gore_(genre)") and count people ("1girl", "2boys"). Read
# as written, a bracket or an underscore stood between a modifier and its noun and a count was glued
# to its noun, so "(female:1.2) doctor" and "1girl, nurse" stated nothing.
_EXTRA_NETWORK = re.compile(r"<[^<>\s:]+:[^<>]*>")
_WEIGHT = re.compile(r":\s*-?(?:\d+\.?\d*|\.\d+)\s*(?=[)\]])")
_ESCAPED_BRACKET = re.compile(r"\\(?=[()\[\]{}])")
_BRACKETS = re.compile(r"[()\[\]{}_]")
_COUNTED_PEOPLE = re.compile(r"(?<!\w)(\d+)\+?(girls?|boys?|others?)(?!\w)", re.IGNORECASE)


def read_prompt_syntax(text: str) -> str:
    """``text`` with Stable Diffusion's prompt syntax read as plain words."""
    text = _EXTRA_NETWORK.sub(" ", text)
    text = _WEIGHT.sub("", text)
    text = _BRACKETS.sub(" ", _ESCAPED_BRACKET.sub("", text))
    return _COUNTED_PEOPLE.sub(r"\1 \2", text)


def normalize_text(text: str) -> str:
    """Emoji as words, NFKC, casefold, prompt syntax as words (:func:`read_prompt_syntax`), single
    spaces: the form every rule matches against."""
    return " ".join(read_prompt_syntax(unicodedata.normalize("NFKC", spell_out_emoji(text)).casefold()).split())


def embedding_text(text: str) -> str:
    """What the embedder reads of a prompt or an exemplar: emoji written out as words (it reads
    emoji as unknown tokens), compatibility forms folded (NFKC: full-width "ｗｏｍａｎ", ligatures
    and styled letters read as the plain words the rules see) and prompt syntax read as words
    (:func:`read_prompt_syntax`: "(female:1.2)" and "female_doctor" are the words of plain prompts,
    which the exemplars and the classifier's training prompts are); case is left to the embedder."""
    return read_prompt_syntax(unicodedata.normalize("NFKC", spell_out_emoji(text)))


def _term_pattern(term: str) -> str:
    term = normalize_text(term)
    prefix = term.endswith("*")
    if prefix:
        term = term[:-1]
    parts = [re.escape(p) for p in re.split(r"[\s]+", term)]
    body = r"[\s\-]+".join(parts)
    return body + (r"\w*" if prefix else "")


def terms_regex(terms: list[str], suffix: str = "", *, ignore_case: bool = False) -> re.Pattern[str] | None:
    """One compiled alternation of ``terms`` with word boundaries; longest terms first so a
    multi-word term wins over its first word. ``ignore_case`` for text as written (the rules'
    normal form is case-folded already)."""
    if not terms:
        return None
    ordered = sorted({_term_pattern(t) for t in terms}, key=len, reverse=True)
    flags = re.IGNORECASE if ignore_case else 0
    return re.compile(_BOUNDARY_START + "(?:" + "|".join(ordered) + ")" + suffix + _BOUNDARY_END, flags)


@dataclass(frozen=True)
class KeywordHit:
    value_id: str
    keyword: str


class HarmKeywords:
    """The keyword stage: the first harm value (in registry order) whose keywords occur."""

    def __init__(self, registry: Registry) -> None:
        self._rules: list[tuple[str, re.Pattern[str], re.Pattern[str] | None]] = []
        for value in registry.values:
            if value.kind != "harm" or not value.keywords:
                continue
            keywords = terms_regex(value.keywords)
            assert keywords is not None
            self._rules.append((value.id, keywords, keyword_exceptions(value)))

    def match(self, normalized: str) -> KeywordHit | None:
        """The first harm value (registry order) with a keyword in ``normalized``."""
        hits = self.match_all(normalized, first_only=True)
        return hits[0] if hits else None

    def match_all(self, normalized: str, first_only: bool = False) -> list[KeywordHit]:
        """Every harm value with a keyword in ``normalized``, in registry order."""
        hits = []
        for value_id, keywords, exceptions in self._rules:
            text = exceptions.sub(" ", normalized) if exceptions is not None else normalized
            found = keywords.search(text)
            if found:
                hits.append(KeywordHit(value_id, found.group(0)))
                if first_only:
                    break
        return hits


class ExplicitAttributes:
    """Finds protected attributes a prompt already states ("a female doctor", "an Asian nurse",
    "a woman", "a chef of Indian descent"). A bias value whose attribute is stated is suppressed:
    steering it would contradict the user."""

    def __init__(self, registry: Registry) -> None:
        nouns = [normalize_text(n) for n in registry.person_nouns]
        self._look_alikes = LookAlikes(registry)
        all_modifiers: list[str] = []
        all_words: list[str] = []
        for value in registry.values:
            for cls in (value.classes or {}).values():
                all_modifiers += cls.modifiers
                all_words += cls.words
            all_modifiers += value.stated_modifiers
            all_words += value.stated_words
        noun_alt = "(?:" + "|".join(sorted({re.escape(n) for n in nouns}, key=len, reverse=True)) + r")(?:e?s)?"
        # Other attribute terms may sit between a modifier and its noun ("a black female doctor").
        between_terms = sorted({_term_pattern(t) for t in all_modifiers + all_words}, key=len, reverse=True)
        # Each term between is taken whole (an atomic group): "african american" read as one term or as
        # two made the search try 2^n splits of n repeats (18 repeats: 18 s for one prompt).
        between = r"(?:(?>[\s\-]+(?:" + "|".join(between_terms) + ")))*" if between_terms else ""
        self._rules: list[tuple[str, str, list[re.Pattern[str]]]] = []
        for value in registry.values:
            if value.kind != "bias" or not value.classes or not value.attribute:
                continue
            groups = [(name, cls.words, cls.modifiers) for name, cls in value.classes.items()]
            if value.stated_words or value.stated_modifiers:
                groups.append((UNLISTED_CLASS, value.stated_words, value.stated_modifiers))
            for class_name, class_words, class_modifiers in groups:
                patterns: list[re.Pattern[str]] = []
                # A class word in the possessive usually names an object ("men's shoes", "a king's
                # crown"), so it states nothing about who is in the image.
                words = terms_regex(class_words, suffix=_NOT_POSSESSIVE)
                if words is not None:
                    patterns.append(words)
                if class_modifiers:
                    mods = (
                        "(?:"
                        + "|".join(sorted({_term_pattern(m) for m in class_modifiers}, key=len, reverse=True))
                        + ")"
                    )
                    patterns.append(
                        re.compile(
                            _BOUNDARY_START
                            + mods
                            + _DESCRIBES_APPEARANCE
                            + between
                            + r"[\s\-]+"
                            + noun_alt
                            + _BOUNDARY_END
                        )
                    )
                    # Up to two other words between ("a male kindergarten teacher"), spaces only,
                    # so "black-haired girl" or "a white lab coat" state nothing.
                    patterns.append(
                        re.compile(
                            _BOUNDARY_START
                            + mods
                            + _DESCRIBES_APPEARANCE
                            + r"(?:\s+[\w']+){0,2}\s+"
                            + noun_alt
                            + _BOUNDARY_END
                        )
                    )
                    patterns.append(
                        re.compile(
                            _BOUNDARY_START
                            + r"of\s+"
                            + mods
                            + r"\s+(?:descent|heritage|origin|ancestry)"
                            + _BOUNDARY_END
                        )
                    )
                self._rules.append((value.attribute, class_name, patterns))

    def stated(self, normalized: str) -> dict[str, str]:
        """Attribute -> first stated class, e.g. ``{"gender": "female"}`` (``unlisted`` for a
        stated word that names no class). Look-alike phrases ("king penguin") state nothing."""
        normalized = self._look_alikes.blank(normalized)
        found: dict[str, str] = {}
        for attribute, class_name, patterns in self._rules:
            if attribute in found:
                continue
            if any(p.search(normalized) for p in patterns):
                found[attribute] = class_name
        return found


class LookAlikes:
    """Blanks the registry's person look-alike phrases ("king penguin", "cowboy boots") with spaces
    of the same length, so offsets into the text stay valid and their words count as nothing."""

    def __init__(self, registry: Registry) -> None:
        # Case-insensitive: the bias rewrite looks for person nouns in the prompt as written
        # ("A King Penguin beside a zookeeper").
        self._regex = terms_regex(registry.person_look_alikes, ignore_case=True)

    def blank(self, text: str) -> str:
        if self._regex is None:
            return text
        return self._regex.sub(lambda m: " " * len(m.group(0)), text)


class PersonNouns:
    """Locates person nouns. The bias rewrite rule places the attribute word before the first one;
    the selector treats one as evidence of a person, except in the possessive ("a judge's gavel")
    or inside a look-alike phrase ("a nurse shark"), which name something else."""

    def __init__(self, registry: Registry) -> None:
        alt = "|".join(sorted({re.escape(normalize_text(n)) for n in registry.person_nouns}, key=len, reverse=True))
        self.regex = re.compile(_BOUNDARY_START + "(?:" + alt + r")(?:e?s)?" + _BOUNDARY_END, re.IGNORECASE)
        self._evidence = re.compile(self.regex.pattern + _NOT_POSSESSIVE)
        self._look_alikes = LookAlikes(registry)

    def first(self, text: str) -> re.Match[str] | None:
        """The first person noun outside look-alike phrases, preferring one that is not in the
        possessive ("a farmer's tractor driven by a mechanic": the mechanic)."""
        blanked = self._look_alikes.blank(text)
        return self._evidence.search(blanked) or self.regex.search(blanked)

    def present(self, normalized: str) -> bool:
        """A non-possessive person noun occurs in ``normalized`` text, outside look-alike phrases."""
        return self._evidence.search(self._look_alikes.blank(normalized)) is not None


def keyword_exceptions(value: ValuePrinciple) -> re.Pattern[str] | None:
    """A harm value's keyword exceptions ("blood orange", "bloody mary") as one case-insensitive
    pattern, for text as written."""
    return terms_regex(value.keyword_exceptions, ignore_case=True)


def exception_blanker(registry: Registry) -> re.Pattern[str] | None:
    """All harm values' keyword exceptions as one pattern: retrieval embeds the prompt with these
    known-benign phrases removed, so "nude lipstick" is not pulled towards nudity by its embedding."""
    terms = [t for v in registry.values if v.kind == "harm" for t in v.keyword_exceptions]
    return terms_regex(terms)


def value_attribute(value: ValuePrinciple) -> str | None:
    return value.attribute if value.kind == "bias" else None
