"""Robust normal form and keyword matching through the built extension: obfuscated spellings are
found, benign look-alikes are not, odd input does not fail, and invalid lists raise errors that name
them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from livo.errors import InvalidParameterError, LivoError
from livo.values.robust_text import KeywordHit, RobustKeywords, normalize_robust

NUDITY, GORE, HORROR = 0, 1, 2
GROUPS = [
    ["naked", "nude", "sex", "porn*", "in the buff"],
    ["blood", "bloody", "gore", "dead", "massacre", "open wound*"],
    ["zombie*", "corpse*", "walking dead"],
]
EXCEPTIONS = [
    ["naked mole rat*", "same sex"],
    ["blood orange*", "bloody mary"],
    ["zombie cocktail*"],
]
PROTECTED = ["baked", "blond", "bloom", "flood", "corps"]


@pytest.fixture(scope="module")
def keywords() -> RobustKeywords:
    return RobustKeywords(GROUPS, EXCEPTIONS, PROTECTED)


def groups(keywords: RobustKeywords, text: str) -> list[int]:
    return [hit.group for hit in keywords.match([text])[0]]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Bl00dy", "bloody"),
        ("n@ked", "naked"),
        ("z0mbie", "zombie"),
        ("g0re", "gore"),
        ("$ex", "sex"),
        ("bloooody", "bloody"),
        ("b.l.o.o.d", "blood"),
        ("n-a-k-e-d", "naked"),
        ("the n a k e d truth", "the naked truth"),
        ("b_l_o_o_d", "blood"),
        ("ｎａｋｅｄ", "naked"),
        ("na\u200bked", "naked"),
    ],
)
def test_normal_form_undoes_obfuscated_spellings(text, expected):
    assert normalize_robust([text]) == [expected]


def test_normal_form_leaves_numbers_and_camera_tags_alone():
    assert normalize_robust(["Born in 1990, 4 cats, 4k 35mm 1080p, SD15"]) == ["born in 1990 4 cats 4k 35mm 1080p sd15"]


def test_normal_form_is_a_fixed_point():
    once = normalize_robust(["BL00DY n . a . k . e . d, a, b, c — ＦＵＬＬ"])
    assert normalize_robust(once) == once


@pytest.mark.parametrize(
    ("text", "group"),
    [
        ("a bl00dy knife", GORE),
        ("b.l.o.o.d on the floor", GORE),
        ("a bloddy knife", GORE),
        ("n@ked man", NUDITY),
        ("n a k e d man", NUDITY),
        ("nakeddd", NUDITY),
        ("$ex scene", NUDITY),
        ("z0mbies", HORROR),
        ("a zombei", HORROR),
        ("a corspe", HORROR),
    ],
)
def test_obfuscated_spellings_are_found(keywords, text, group):
    assert groups(keywords, text) == [group]


@pytest.mark.parametrize(
    "text",
    [
        "a deadline on the calendar",
        "the Sussex countryside",
        "a bloodhound in the field",
        "a glass of blood orange juice",
        "a bl00d orange",
        "BLOOD-ORANGE sorbet",
        "a naked mole rat",
        "a zombie cocktail",
        "baked bread",
        "a blond woman in bloom",
        "a flood",
        "army corps",
    ],
)
def test_benign_look_alikes_are_not_found(keywords, text):
    assert groups(keywords, text) == []


def test_an_exception_only_covers_its_own_occurrence(keywords):
    assert keywords.match(["blood orange and blood"]) == [[KeywordHit(GORE, "blood", "blood", 0)]]


def test_protected_words_are_the_callers_list():
    unprotected = RobustKeywords(GROUPS, EXCEPTIONS)
    assert groups(unprotected, "baked bread") == [NUDITY]


def test_hits_report_the_term_as_written_the_words_and_the_distance(keywords):
    assert keywords.match(["Open Wounds", "a bloddy knife", "Z0MBIES"]) == [
        [KeywordHit(GORE, "open wound*", "open wounds", 0)],
        [KeywordHit(GORE, "bloody", "bloddy", 1)],
        [KeywordHit(HORROR, "zombie*", "zombies", 0)],
    ]


def test_several_word_terms_match_whole_phrases(keywords):
    assert groups(keywords, "in the buff") == [NUDITY]
    assert groups(keywords, "in the buffet") == []
    hits = keywords.match(["the walking dead"])[0]
    assert [(h.group, h.term) for h in hits] == [(GORE, "dead"), (HORROR, "walking dead")]


def test_prefix_terms_match_word_starts_and_typos_of_their_stem_only(keywords):
    assert groups(keywords, "pornography") == [NUDITY]
    assert groups(keywords, "zombeis") == []


def test_edit_distance_lengths_are_parameters():
    strict = RobustKeywords(GROUPS, EXCEPTIONS, fuzzy_min_len=7, fuzzy2_min_len=9)
    assert groups(strict, "a bloddy knife") == []
    assert groups(strict, "a masakre") == []
    assert groups(RobustKeywords(GROUPS, EXCEPTIONS), "a masakre") == [GORE]


@pytest.mark.parametrize(
    "text",
    ["", "   \t\n", "!!!", "🙂🙂", "x" * 10_000, "bl00d " * 2_000, "一位医生 blood Врач नर्स طبيب", "\x00\x01\ud7ff"],
)
def test_odd_input_does_not_fail(keywords, text):
    (normal,) = normalize_robust([text])
    (hits,) = keywords.match([text])
    assert normal == normal.strip() and "  " not in normal
    assert [h.group for h in hits] == ([GORE] if "blood" in normal else [])


def test_batches_keep_order_and_agree_with_single_texts(keywords):
    texts = [f"prompt {i}: " + ("b.l.o.o.d" if i % 3 == 0 else "a red fox") for i in range(5_000)]
    batch = keywords.match(texts)
    assert [bool(row) for row in batch] == [i % 3 == 0 for i in range(5_000)]
    assert batch[:50] == [keywords.match([t])[0] for t in texts[:50]]
    assert normalize_robust(texts)[:50] == [normalize_robust([t])[0] for t in texts[:50]]


def test_batches_run_in_a_forked_child():
    """A forked child gets no pool threads; the batch must still finish (on the calling thread)."""
    code = (
        "import os\n"
        "from livo.values.robust_text import normalize_robust\n"
        "texts = ['b.l.o.o.d'] * 10_000\n"
        "normalize_robust(texts)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os._exit(0 if normalize_robust(texts)[0] == 'blood' else 1)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "raise SystemExit(os.waitstatus_to_exitcode(status))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], timeout=120, env={**os.environ})
    assert done.returncode == 0


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"groups": [["blood"]], "exceptions": []}, ["exceptions", "1 groups"]),
        ({"groups": [["blood", "!!!"]], "exceptions": [[]]}, ["groups", "'!!!'", "group 0, item 1"]),
        ({"groups": [["*"]], "exceptions": [[]]}, ["groups", "'*'"]),
        ({"groups": [["blood"]], "exceptions": [["  "]]}, ["exceptions"]),
        ({"groups": [["blood"]], "exceptions": [[]], "protected": ["blood orange"]}, ["protected", "one word"]),
        ({"groups": [], "exceptions": [], "fuzzy_min_len": 2}, ["fuzzy_min_len=2"]),
        ({"groups": [], "exceptions": [], "fuzzy_min_len": 6, "fuzzy2_min_len": 5}, ["fuzzy2_min_len=5"]),
        ({"groups": [], "exceptions": [], "fuzzy_min_len": -1}, ["fuzzy_min_len=-1"]),
    ],
)
def test_invalid_lists_raise_errors_naming_them(kwargs, names):
    with pytest.raises(InvalidParameterError) as raised:
        RobustKeywords(**kwargs)
    message = str(raised.value).replace('"', "'")
    assert all(name in message for name in names), message
    assert isinstance(raised.value, LivoError) and isinstance(raised.value, ValueError)


def test_a_single_string_is_refused_rather_than_read_as_characters(keywords):
    with pytest.raises(TypeError, match="single str"):
        normalize_robust("blood")
    with pytest.raises(TypeError, match="single str"):
        keywords.match("blood")


def test_non_string_items_are_a_type_error(keywords):
    with pytest.raises(TypeError, match="texts"):
        normalize_robust(["blood", 3])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="texts"):
        keywords.match([None])  # type: ignore[list-item]


def test_an_unencodable_string_keeps_pythons_error(keywords):
    with pytest.raises(UnicodeEncodeError):
        normalize_robust(["a lone \ud800 surrogate"])


def test_group_count(keywords):
    assert keywords.group_count == 3
