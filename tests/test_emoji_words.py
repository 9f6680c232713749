"""Emoji written out as words for value selection (livo.values.emoji_words)."""

from __future__ import annotations

import pytest

from livo.values.emoji_words import spell_out_emoji


def words(text: str) -> str:
    return " ".join(spell_out_emoji(text).split())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("🩸 on fresh snow", "drop of blood on fresh snow"),
        ("a 👮 directing traffic", "a police officer directing traffic"),
        # a tone before the person it modifies, where the stated-attribute rule looks
        ("🧔🏾 portrait", "medium-dark-skinned bearded person portrait"),
        # person + object is a profession; a gender sign says the person's gender
        ("👩🏿\u200d⚕\ufe0f portrait", "dark-skinned woman health worker portrait"),
        ("🧑\u200d🚀 in space", "astronaut in space"),
        ("🏃\u200d♀\ufe0f in the park", "female runner in the park"),
        # names that would mislead: folded hands are no person; a heart is no race
        ("🙏 thanks", "folded hands thanks"),
        ("❤\ufe0f🖤 love", "red heart heart love"),
        ("⭐ night", "medium star night"),
        # faces are moods; a tone on a hand is no person's
        ("😍 sunset 😱", "sunset"),
        ("👍🏿 like", "thumbs up sign like"),
        ("a🍎pie", "a red apple pie"),  # set off by spaces, never joined to the text
    ],
)
def test_emoji_become_their_words(text: str, expected: str) -> None:
    assert words(text) == expected


def test_text_without_emoji_is_returned_as_it_is() -> None:
    text = "a doctor, 35mm — 4k © ™ ° 🇯🇵"  # symbols that are not emoji, and a flag, stay
    assert spell_out_emoji(text) is text
