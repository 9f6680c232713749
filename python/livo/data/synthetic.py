"""A labelled prompt corpus with injected duplicates, for testing and benchmarking deduplication.

Base prompts are composed from many independent slots so that two different bases rarely look
alike; each duplicate is a copy of a base altered in one of four ways a real corpus shows:
``exact`` copies, ``format`` changes (case, spacing, punctuation), ``unicode`` variants (full-width
forms, decomposed accents, zero-width spaces, curly quotes) and ``edit`` (one word inserted,
deleted or swapped, or a one-character typo). The true cluster of every row is known.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass

_SUBJECTS = [
    "doctor",
    "nurse",
    "engineer",
    "teacher",
    "farmer",
    "pilot",
    "chef",
    "lawyer",
    "scientist",
    "painter",
    "firefighter",
    "librarian",
    "architect",
    "dancer",
    "mechanic",
    "astronaut",
    "fisherman",
    "baker",
    "judge",
    "gardener",
    "violinist",
    "surgeon",
    "carpenter",
    "sailor",
    "red fox",
    "grey owl",
    "old lighthouse",
    "steam train",
    "paper lantern",
    "glass teapot",
    "bicycle",
    "sunflower field",
    "mountain cabin",
    "koi pond",
    "stone bridge",
    "city tram",
]
_TRAITS = [
    "smiling",
    "tired",
    "confident",
    "curious",
    "elderly",
    "young",
    "cheerful",
    "serious",
    "thoughtful",
    "proud",
    "calm",
    "busy",
    "weathered",
    "elegant",
    "shy",
    "determined",
]
_ACTIONS = [
    "reading a worn map",
    "holding a lantern",
    "looking out of a window",
    "walking in the rain",
    "drinking tea",
    "fixing a clock",
    "writing in a notebook",
    "standing on a balcony",
    "feeding pigeons",
    "carrying groceries",
    "waiting for a bus",
    "playing chess",
    "painting a mural",
    "watering plants",
    "crossing a bridge",
    "sitting by a fire",
]
_PLACES = [
    "in a busy market",
    "on a snowy street",
    "inside a quiet library",
    "beside a harbour",
    "in a desert town",
    "at a train station",
    "in a bamboo forest",
    "on a rooftop garden",
    "in a narrow alley",
    "near a waterfall",
    "in an old factory",
    "on a windy beach",
    "in a sunlit kitchen",
    "at a night festival",
    "in a greenhouse",
    "under a stone arch",
]
_TIMES = [
    "at dawn",
    "at noon",
    "at dusk",
    "at midnight",
    "in autumn",
    "in spring",
    "after a storm",
    "during a heatwave",
    "on a foggy morning",
    "under a full moon",
]
_STYLES = [
    "oil painting",
    "watercolour",
    "35mm photograph",
    "charcoal sketch",
    "isometric render",
    "ukiyo-e print",
    "pastel illustration",
    "cinematic still",
    "linocut",
    "polaroid photo",
    "pencil drawing",
    "digital art",
    "gouache study",
    "studio portrait",
    "long exposure photo",
]
_DETAILS = [
    "soft light",
    "high contrast",
    "muted colours",
    "warm tones",
    "cold palette",
    "film grain",
    "shallow depth of field",
    "dramatic shadows",
    "wide angle",
    "golden hour glow",
    "misty air",
    "reflections on wet ground",
    "detailed texture",
    "minimalist composition",
    "vivid colours",
]
_INSERTS = ["very", "beautiful", "highly detailed", "award winning", "simple", "quiet", "small"]
_FULLWIDTH = {chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)}

KINDS = ("exact", "format", "unicode", "edit")


@dataclass
class LabelledCorpus:
    texts: list[str]
    cluster: list[int]  # true cluster id (index of the base prompt's first row)
    kind: list[str]  # "base" or the duplicate kind


def _base_prompt(rng: random.Random) -> str:
    return (
        f"a {rng.choice(_TRAITS)} {rng.choice(_SUBJECTS)} {rng.choice(_ACTIONS)} "
        f"{rng.choice(_PLACES)} {rng.choice(_TIMES)}, {rng.choice(_STYLES)}, "
        f"{rng.choice(_DETAILS)}, {rng.choice(_DETAILS)}"
    )


def _format_variant(text: str, rng: random.Random) -> str:
    choice = rng.randrange(4)
    if choice == 0:
        return text.upper() if rng.random() < 0.3 else text.title()
    if choice == 1:
        return "  ".join(text.split(" ")) + "  "
    if choice == 2:
        return text.replace(",", ";") + rng.choice([".", "!", "!!", " ..."])
    return "  " + text.replace(", ", " - ").capitalize() + "."


def _unicode_variant(text: str, rng: random.Random) -> str:
    choice = rng.randrange(4)
    if choice == 0:  # full-width forms for one word
        words = text.split(" ")
        i = rng.randrange(len(words))
        words[i] = "".join(_FULLWIDTH.get(c, c) for c in words[i])
        return " ".join(words)
    if choice == 1:  # decomposed accents
        return unicodedata.normalize("NFD", text.replace("e", "é", 2))
    if choice == 2:  # zero-width spaces inside words
        i = rng.randrange(1, len(text) - 1)
        return text[:i] + "\u200b" + text[i:]
    return "\u201c" + text + "\u201d"


def _edit_variant(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    choice = rng.randrange(4)
    if choice == 0:
        words.insert(rng.randrange(len(words)), rng.choice(_INSERTS))
    elif choice == 1 and len(words) > 8:
        del words[rng.randrange(1, len(words))]
    elif choice == 2:
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
    else:
        i = rng.randrange(len(words))
        w = words[i]
        if len(w) > 3:
            j = rng.randrange(1, len(w) - 1)
            words[i] = w[:j] + w[j + 1 :]
    return " ".join(words)


def labelled_corpus(n: int, *, duplicate_rate: float = 0.3, seed: int = 0) -> LabelledCorpus:
    """``n`` prompts of which about ``duplicate_rate`` are altered copies of earlier prompts.
    Kinds of duplicate are drawn uniformly; the texts are shuffled so copies are not adjacent."""
    rng = random.Random(seed)
    n_base = max(1, round(n * (1 - duplicate_rate)))
    seen: set[str] = set()
    bases: list[str] = []
    while len(bases) < n_base:
        text = _base_prompt(rng)
        if text not in seen:
            seen.add(text)
            bases.append(text)
    rows: list[tuple[str, int, str]] = [(b, i, "base") for i, b in enumerate(bases)]
    variants = {"exact": lambda t, r: t, "format": _format_variant, "unicode": _unicode_variant, "edit": _edit_variant}
    for _ in range(n - n_base):
        base = rng.randrange(n_base)
        kind = rng.choice(KINDS)
        rows.append((variants[kind](bases[base], rng), base, kind))
    rng.shuffle(rows)
    # Relabel clusters by first occurrence so they are comparable with dedup's cluster_id.
    first: dict[int, int] = {}
    cluster = []
    for i, (_, base, _) in enumerate(rows):
        cluster.append(first.setdefault(base, i))
    return LabelledCorpus([r[0] for r in rows], cluster, [r[2] for r in rows])
