"""Field-by-field reading of the JSON documents LiVO writes (livo.json_fields)."""

from __future__ import annotations

import pytest

from livo.errors import InputError
from livo.json_fields import JsonFields

DOCUMENT = {
    "name": "x",
    "rows": 3,
    "ratio": 0.5,
    "flag": True,
    "limits": {"a": 1, "b": 2.5},
    "parts": [{"rows": 1, "groups": [1, 0]}, {"rows": "many", "groups": [1, -1]}],
    "names": ["a", 2],
    "nothing": None,
    "unbounded": float("inf"),  # Python's JSON reader takes Infinity and NaN
}


def fields() -> JsonFields:
    return JsonFields("doc.json", DOCUMENT, what="damaged document", advice="; write it again")


def test_fields_of_the_right_type_are_read() -> None:
    top = fields()
    assert (top.text("name"), top.count("rows", 1), top.ratio("ratio"), top.flag("flag")) == ("x", 3, 0.5, True)
    assert top.numbers("limits") == {"a": 1.0, "b": 2.5}
    assert top.each("parts")[0].counts("groups") == (1, 0)
    assert top.text("nothing", optional=True) is None and top.optional_object("absent") is None


@pytest.mark.parametrize(
    ("read", "message"),
    [
        (lambda f: f.text("absent"), "field 'absent' is missing"),
        (lambda f: f.text("rows"), "field 'rows' must be a string, got a number (3)"),
        (lambda f: f.number("flag"), "field 'flag' must be a number, got true/false (true)"),  # a bool is no number
        (lambda f: f.number("unbounded"), "field 'unbounded' must be a number, got NaN or Infinity (Infinity)"),
        (lambda f: f.count("rows", 5), "field 'rows' must be an integer >= 5, got a number (3)"),
        (lambda f: f.object("nothing"), "field 'nothing' must be a JSON object, got null"),
        (lambda f: f.each("parts")[1].count("rows"), "field 'parts[1].rows' must be an integer >= 0, got a string"),
        (lambda f: f.each("parts")[1].counts("groups"), "field 'parts[1].groups' must be a list of integers >= 0"),
        (lambda f: f.texts("names"), "field 'names[1]' must be a string, got a number (2)"),
        (lambda f: f.each("names"), "field 'names[0]' must be a JSON object, got a string"),
    ],
)
def test_a_missing_or_mistyped_field_is_named_with_the_file(read, message: str) -> None:
    with pytest.raises(InputError) as raised:
        read(fields())
    assert str(raised.value).startswith(f"doc.json: damaged document: {message}")
    assert str(raised.value).endswith("; write it again")


def test_a_document_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(
        InputError, match=r"^doc.json: damaged document: the top level must be a JSON object, got a list$"
    ):
        JsonFields("doc.json", [1], what="damaged document")
