"""Emoji written out as words, so that value selection reads what a prompt's emoji show.

Prompt logs use emoji for content: "🩸 on fresh snow", "🧟 in times square", "a 👮 directing
traffic". The keyword lists never match them and the English embedder reads them as unknown
tokens, so such prompts got no value at all. :func:`spell_out_emoji` replaces each emoji (with the
modifiers and joined parts that belong to it) by its Unicode name in lower case ("drop of blood",
"zombie", "police officer"), refined where the emoji standard says more than the name:

- a skin-tone modifier states a skin colour; it is written before the person it modifies
  ("dark-skinned woman"), which is where the stated-attribute rule looks for it (on a hand or
  another body part alone it states nothing about a person, and is left out);
- a gender sign joined to a person ("🏃‍♀️") is written as "female" or "male" before the person;
- a person joined to an object is a profession ("👩‍⚕️": "woman health worker"), named as the
  Unicode emoji names (CLDR) name those sequences;
- a few code points whose character name says something the picture does not are given their
  emoji name instead: 🙏 shows folded hands, not a person; 👳 a person of either gender; ❤ a red
  heart, not a "heavy black" one.

The words "black" and "white" are left out of every name: in Unicode's names they mean filled and
outlined ("BLACK STAR", "WHITE FLOWER"), and next to a person they would read as a stated race.
Faces (😍, 😱 and the other smileys) show a mood, not what is drawn, and are dropped, as are the
joiner and variation selectors. Flags and keycaps are left as they are.
"""

from __future__ import annotations

import re
import unicodedata

_ZWJ = "\u200d"
_VARIATION = "\ufe0e\ufe0f"
_TONE_FIRST, _TONE_LAST = 0x1F3FB, 0x1F3FF

# Emoji blocks: Miscellaneous Symbols and Dingbats, the supplementary pictographic blocks from
# Miscellaneous Symbols and Pictographs to Symbols and Pictographs Extended-A, and the stars and
# squares of Miscellaneous Symbols and Arrows that are emoji.
_EMOJI = "\u2600-\u27bf\u2b1b\u2b1c\u2b50\u2b55\U0001f300-\U0001faff"
_TONE = "\U0001f3fb-\U0001f3ff"
_UNIT = re.compile(f"[{_EMOJI}][{_TONE}]?[{_VARIATION}]?(?:{_ZWJ}[{_EMOJI}][{_TONE}]?[{_VARIATION}]?)*")

# Skin-tone modifiers (Fitzpatrick types 1-2 to 6), as stated skin colours.
SKIN_TONES = {
    0x1F3FB: "light-skinned",
    0x1F3FC: "medium-light-skinned",
    0x1F3FD: "medium-skinned",
    0x1F3FE: "medium-dark-skinned",
    0x1F3FF: "dark-skinned",
}
_GENDER_SIGNS = {0x2640: "female", 0x2642: "male"}
# The object of a "person + object" profession sequence, and the profession it makes.
PROFESSIONS = {
    0x2695: "health worker",
    0x2696: "judge",
    0x2708: "pilot",
    0x1F33E: "farmer",
    0x1F373: "cook",
    0x1F393: "student",
    0x1F3A4: "singer",
    0x1F3A8: "artist",
    0x1F3EB: "teacher",
    0x1F3ED: "factory worker",
    0x1F4BB: "technologist",
    0x1F4BC: "office worker",
    0x1F527: "mechanic",
    0x1F52C: "scientist",
    0x1F680: "astronaut",
    0x1F692: "firefighter",
}
# The people a profession sequence starts with: "woman" + "health worker"; a person of no stated
# gender is the profession alone.
_PROFESSION_HOLDERS = {0x1F468: "man", 0x1F469: "woman", 0x1F9D1: ""}
# Emoji names where the character name misleads.
EMOJI_NAMES = {
    0x2764: "red heart",
    0x1F46F: "people with bunny ears",
    0x1F470: "person with veil",
    0x1F472: "person with skullcap",
    0x1F473: "person wearing turban",
    0x1F482: "guard",
    0x1F52A: "kitchen knife",
    0x1F575: "detective",
    0x1F64C: "raising hands",
    0x1F64F: "folded hands",
    0x1F935: "person in tuxedo",
    0x1F9D1: "person",
    0x1F9D3: "older person",
}
_LEFT_OUT = {"black", "white"}
# Words of the body-part emoji that take a skin tone (👍🏿, 👋🏽, 💪🏻).
_BODY_PARTS = {"hand", "hands", "fist", "thumbs", "finger", "fingers", "palm", "palms", "biceps", "nail"}
_BODY_PARTS |= {"ear", "nose", "leg", "foot", "fingertips", "index", "sign"}
_PEOPLE = {"person", "people", "man", "woman"}  # "happy person raising one hand" is a person


def spell_out_emoji(text: str) -> str:
    """``text`` with each emoji replaced by its words (see the module's notes); text without emoji
    is returned as it is. Words are set off by spaces, so they never join the text around them."""
    if not _UNIT.search(text):
        return text
    return _UNIT.sub(lambda unit: f" {_unit_words(unit.group(0))} ", text)


def _unit_words(unit: str) -> str:
    parts = [part.strip(_VARIATION) for part in unit.split(_ZWJ)]
    tone = next((SKIN_TONES[ord(c)] for part in parts for c in part[1:] if ord(c) in SKIN_TONES), "")
    bases = [ord(part[0]) for part in parts if part]
    gender = next((_GENDER_SIGNS[b] for b in bases if b in _GENDER_SIGNS), "")
    others = [b for b in bases if b not in _GENDER_SIGNS]
    profession = next((PROFESSIONS[b] for b in others[1:] if b in PROFESSIONS), None)
    if profession is not None and others[0] in _PROFESSION_HOLDERS:
        names = [_PROFESSION_HOLDERS[others[0]], profession]
    else:
        found = [_name(b) for b in others]
        if None in found:
            return ""  # a face: a mood, not content
        names = [name or "" for name in found]
    words = set(" ".join(names).split())
    if tone and words & _BODY_PARTS and not words & _PEOPLE:
        tone = ""
    return " ".join(word for word in [tone, gender, *names] if word)


def _name(code_point: int) -> str | None:
    """The words of one emoji; None for a face; "" for one this Python's Unicode tables lack."""
    if code_point in SKIN_TONES:
        return ""  # a tone with no emoji before it modifies nothing
    if code_point in EMOJI_NAMES:
        return EMOJI_NAMES[code_point]
    name = unicodedata.name(chr(code_point), "").lower()
    words = name.split()
    if "face" in words:
        return None
    return " ".join(word for word in words if word not in _LEFT_OUT)


__all__ = ["EMOJI_NAMES", "PROFESSIONS", "SKIN_TONES", "spell_out_emoji"]
