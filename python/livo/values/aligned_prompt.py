"""Rewrite rules that dataset construction uses to turn a prompt into its aligned variant.

Bias values insert an attribute class word before the first person noun ("a doctor" → "a female
doctor"), fixing the article; harm values replace or remove harmful words ("a bloody knight" →
"a knight"). The rules live in the registry so a new value needs no code.
"""

from __future__ import annotations

import re

from livo.errors import ConfigError
from livo.values.matching import PersonNouns, keyword_exceptions, terms_regex
from livo.values.registry import Registry, ValuePrinciple

_ARTICLE_BEFORE = re.compile(r"(?<!\w)(a|an)(\s+)$", re.IGNORECASE)


def _article_for(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def insert_attribute(prompt: str, registry: Registry, value: ValuePrinciple, class_name: str) -> str:
    """``prompt`` with the class word of ``class_name`` inserted before its first person noun; if no
    person noun is found, the word is appended as ", <word> person" so the attribute is still stated."""
    if value.kind != "bias" or not value.classes:
        raise ConfigError(f"value {value.id!r} is not a bias value; it has no attribute classes")
    if class_name not in value.classes:
        raise ConfigError(f"value {value.id!r}: unknown class {class_name!r} (classes: {sorted(value.classes)})")
    word = value.classes[class_name].insert
    found = PersonNouns(registry).first(prompt)
    if found is None:
        return f"{prompt.rstrip()}, {word} person"
    head, tail = prompt[: found.start()], prompt[found.start() :]
    article = _ARTICLE_BEFORE.search(head)
    if article:
        original = article.group(1)
        fixed = _article_for(word)
        fixed = fixed.capitalize() if original[0].isupper() else fixed
        head = head[: article.start()] + fixed + article.group(2)
    return f"{head}{word} {tail}"


def remove_harm(prompt: str, value: ValuePrinciple) -> str:
    """``prompt`` with each harmful word replaced as the value's ``replacements`` say (longest
    first, word boundaries, case-insensitive), except inside the value's keyword exceptions ("blood
    orange juice" keeps its blood orange); whitespace and stray punctuation are tidied."""
    if value.kind != "harm":
        raise ConfigError(f"value {value.id!r} is not a harm value; it has no replacements")
    exceptions = keyword_exceptions(value)
    # Odd pieces are exception phrases, kept as written; the others are rewritten.
    pieces = exceptions.split(prompt) if exceptions is not None else [prompt]
    if exceptions is not None:
        spans = [m.group(0) for m in exceptions.finditer(prompt)]
        pieces = [part for pair in zip(pieces, [*spans, ""]) for part in pair][:-1]
    for source in sorted(value.replacements, key=len, reverse=True):
        replace = terms_regex([source], ignore_case=True)
        assert replace is not None
        pieces = [piece if k % 2 else replace.sub(value.replacements[source], piece) for k, piece in enumerate(pieces)]
    text = "".join(pieces)
    if text == prompt:
        return prompt
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)
    text = re.sub(r"([,;:])\s*([,;:])", r"\1", text)
    text = re.sub(r"(?<!\w)(a|an)(\s+)(\w)", lambda m: _fix_article(m), text, flags=re.IGNORECASE)
    return " ".join(text.split()).strip(" ,;:")


def _fix_article(match: re.Match[str]) -> str:
    article = _article_for(match.group(3))
    if match.group(1)[0].isupper():
        article = article.capitalize()
    return f"{article}{match.group(2)}{match.group(3)}"


def aligned_prompt(prompt: str, registry: Registry, value_id: str, class_name: str | None = None) -> str:
    """The aligned variant of ``prompt`` under value ``value_id`` (``class_name`` for bias values)."""
    try:
        value = registry.value(value_id)
    except KeyError:
        raise ConfigError(f"unknown value id {value_id!r} (registry values: {registry.ids})") from None
    if value.kind == "bias":
        if class_name is None:
            raise ConfigError(
                f"value {value_id!r} is a bias value: choose an attribute class from {sorted(value.classes or {})}"
            )
        return insert_attribute(prompt, registry, value, class_name)
    return remove_harm(prompt, value)
