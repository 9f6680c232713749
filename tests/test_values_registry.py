"""Value registry validation, rule matching (keywords, explicit attributes) and rewrite rules.
No model is loaded here."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from livo.errors import ConfigError, InputError
from livo.values.aligned_prompt import aligned_prompt
from livo.values.matching import ExplicitAttributes, HarmKeywords, PersonNouns, normalize_text
from livo.values.registry import builtin_registry_path, load_registry, parse_registry, resolve_registry_path


def minimal() -> dict:
    return {
        "name": "test",
        "person_nouns": ["doctor", "person", "woman", "man"],
        "values": [
            {
                "id": "gender-equality",
                "text": "gender equality",
                "kind": "bias",
                "attribute": "gender",
                "classes": {
                    "male": {"words": ["man"], "modifiers": ["male"], "insert": "male"},
                    "female": {"words": ["woman"], "modifiers": ["female"], "insert": "female"},
                },
                "exemplars": {"positive": ["a portrait of a person"]},
            },
            {
                "id": "no-blood",
                "text": "bloody content is considered inappropriate",
                "kind": "harm",
                "keywords": ["blood", "bloody", "zombi*"],
                "keyword_exceptions": ["blood orange*"],
                "replacements": {"bloody": "", "blood": ""},
                "exemplars": {"positive": ["a knife fight"]},
            },
        ],
    }


@pytest.fixture(scope="module")
def default_registry():
    return load_registry(builtin_registry_path("default"))


def test_builtin_registries_load_and_have_the_required_values(default_registry):
    assert {"gender-equality", "racial-equality", "no-nudity", "no-blood", "no-horror"} <= set(default_registry.ids)
    race = default_registry.value("racial-equality")
    assert set(race.classes) == {"white", "black", "indian", "asian", "latino"}
    assert set(default_registry.value("gender-equality").classes) == {"male", "female"}
    toy = load_registry(builtin_registry_path("toyworld"))
    assert toy.ids == ["colour_equality", "no_blood", "no_zombie"]
    assert resolve_registry_path("default") == builtin_registry_path("default")


def test_toy_registry_matches_the_toy_world_grammar():
    from livo.toyworld import grammar

    toy = load_registry(builtin_registry_path("toyworld"))
    bias = toy.value(grammar.BIAS_PRINCIPLE)
    assert set(bias.classes) == set(grammar.ATTRIBUTES)
    assert set(toy.person_nouns) == set(grammar.PEOPLE)
    for value_id, text in grammar.VALUE_TEXTS.items():
        assert toy.value(value_id).text == text
    for harm_word, value_id in grammar.HARM_PRINCIPLE.items():
        assert HarmKeywords(toy).match(f"a {harm_word} doctor").value_id == value_id


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["values"][0].pop("text"), "values[gender-equality].text"),
        (lambda d: d["values"][0].update(kind="fairness"), "values[gender-equality].kind"),
        (lambda d: d["values"][0].pop("classes"), "values[gender-equality]"),
        (lambda d: d["values"][1].update(attribute="gender"), "values[no-blood]"),
        (lambda d: d["values"][1].pop("replacements"), "values[no-blood]"),
        (lambda d: d["values"][1].update(colour="red"), "values[no-blood].colour"),
        (
            lambda d: d["values"][0]["exemplars"].update(positive=[]),
            "values[gender-equality]: Value error, retrieval needs exemplars.positive",
        ),
        (lambda d: d["values"][0].update(id="Gender Equality"), "values[Gender Equality].id"),
        (lambda d: d["values"][0]["classes"]["male"].pop("insert"), "classes.male.insert"),
        (lambda d: d.pop("person_nouns"), "person_nouns"),
        # Accepted before, then wrong or failing later: a keyword the matcher reduces to nothing failed
        # every load of the index; blank text crashed the first prompt that selected the value; a
        # value named "person" shared the classifier's column of that name, giving wrong selections.
        (
            lambda d: d["values"][1].update(keywords=["bloody", "\N{DROP OF BLOOD}"]),
            "values[no-blood].keywords: Value error, '\N{DROP OF BLOOD}' has no letters or digits",
        ),
        (lambda d: d["values"][1].update(keyword_exceptions=["***"]), "values[no-blood].keyword_exceptions"),
        (lambda d: d["values"][1].update(text="   "), "values[no-blood].text: Value error, must not be blank"),
        (lambda d: d.update(name=" \t"), "field name: Value error, must not be blank"),
        (lambda d: d["values"][1].update(id="person"), "values[person].id: Value error, 'person' is reserved"),
    ],
)
def test_registry_errors_name_the_field(mutate, field):
    data = copy.deepcopy(minimal())
    mutate(data)
    with pytest.raises(ConfigError) as error:
        parse_registry(data, "my.yaml")
    assert "my.yaml" in str(error.value)
    assert field in str(error.value)


def test_duplicate_ids_and_bad_yaml_are_errors(tmp_path):
    data = minimal()
    data["values"].append(copy.deepcopy(data["values"][1]))
    with pytest.raises(ConfigError, match="duplicate value id 'no-blood'"):
        parse_registry(data)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_registry(bad)
    with pytest.raises(InputError, match="missing.yaml: registry file not found"):
        load_registry(tmp_path / "missing.yaml")


def test_registry_hash_ignores_formatting_but_not_meaning(tmp_path):
    data = minimal()
    a = tmp_path / "a.yaml"
    a.write_text(yaml.safe_dump(data, default_flow_style=False))
    b = tmp_path / "b.yaml"
    b.write_text("# comment\n" + yaml.safe_dump(data, default_flow_style=True))
    assert load_registry(a).content_hash() == load_registry(b).content_hash()
    data["values"][1]["keywords"].append("gore")
    assert parse_registry(data).content_hash() != load_registry(a).content_hash()


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("a bloody knight", "no-blood"),
        ("BLOOD on the floor", "no-blood"),
        ("ｂｌｏｏｄ on the floor", "no-blood"),  # full-width letters, NFKC
        ("blood-soaked sheets", "no-blood"),
        ("a horde of zombies", "no-blood"),  # prefix term zombi*
        ("a glass of blood orange juice", None),  # exception phrase
        ("blood oranges and blood on the knife", "no-blood"),  # exception does not hide a real hit
        ("a bloodhound", None),  # word boundary
        ("a cold-blooded lizard", None),
        ("sleeping bloodily?", None),
    ],
)
def test_harm_keywords_use_word_boundaries(prompt, expected):
    hit = HarmKeywords(parse_registry(minimal())).match(normalize_text(prompt))
    assert (hit.value_id if hit else None) == expected


@pytest.mark.parametrize(
    "prompt",
    [
        "a calendar with a deadline",
        "a map of Sussex",
        "a sextant on deck",
        "a nudibranch",
        "a gorgeous view",
        "the corpse flower in bloom",
        "a zombie cocktail",
        "nude lipstick",
        "a naked mole rat",
        "same-sex couple",
    ],
)
def test_default_keywords_skip_tempting_substrings(default_registry, prompt):
    assert HarmKeywords(default_registry).match(normalize_text(prompt)) is None


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("a female doctor", {"gender": "female"}),
        ("an Asian nurse", {"race": "asian"}),
        ("a female asian nurse", {"gender": "female", "race": "asian"}),
        ("an asian woman", {"gender": "female", "race": "asian"}),
        ("a black female pilot", {"gender": "female", "race": "black"}),
        ("a male kindergarten teacher", {"gender": "male"}),
        ("a chef of Indian descent", {"race": "indian"}),
        ("a doctor in a white lab coat", {}),  # colour word not on a person noun
        ("a black-haired teacher", {}),
        ("a woman in a white dress", {"gender": "female"}),
        ("a doctor", {}),
        ("an Indian restaurant", {}),
    ],
)
def test_explicit_attributes(default_registry, prompt, expected):
    assert ExplicitAttributes(default_registry).stated(normalize_text(prompt)) == expected


def test_person_nouns_ignore_possessives(default_registry):
    nouns = PersonNouns(default_registry)
    assert nouns.present(normalize_text("a judge in court"))
    assert nouns.present(normalize_text("three teachers at lunch"))
    assert not nouns.present(normalize_text("a judge's gavel"))
    assert not nouns.present(normalize_text("a bowl of soup"))


def test_rewrite_rules(default_registry):
    assert (
        aligned_prompt("a doctor in a hospital", default_registry, "gender-equality", "female")
        == "a female doctor in a hospital"
    )
    assert (
        aligned_prompt("A doctor at work", default_registry, "racial-equality", "indian") == "An Indian doctor at work"
    )
    assert aligned_prompt("a sunset", default_registry, "gender-equality", "male") == "a sunset, male person"
    assert aligned_prompt("a bloody knight, in the rain", default_registry, "no-blood") == "a knight, in the rain"
    assert aligned_prompt("a naked man", default_registry, "no-nudity") == "a fully clothed man"
    assert aligned_prompt("a zombie in a park", default_registry, "no-horror") == "a person in a park"
    # A keyword's benign phrases are kept (the rewrite made "mary cocktail" of a bloody mary).
    assert (
        aligned_prompt("a bloody mary cocktail beside a bloody knife", default_registry, "no-blood")
        == "a bloody mary cocktail beside a knife"
    )
    assert aligned_prompt("blood orange juice", default_registry, "no-blood") == "blood orange juice"
    assert (
        aligned_prompt("nude lipstick on a nude model", default_registry, "no-nudity")
        == "nude lipstick on a fully clothed model"
    )
    # The attribute goes on a person: not on a look-alike written in capitals, not on a possessive.
    assert (
        aligned_prompt("A King Penguin beside a zookeeper", default_registry, "gender-equality", "female")
        == "A King Penguin beside a female zookeeper"
    )
    assert (
        aligned_prompt("a farmer's tractor driven by a mechanic", default_registry, "gender-equality", "male")
        == "a farmer's tractor driven by a male mechanic"
    )
    with pytest.raises(ConfigError, match="choose an attribute class"):
        aligned_prompt("a doctor", default_registry, "gender-equality")
    with pytest.raises(ConfigError, match="unknown value id"):
        aligned_prompt("a doctor", default_registry, "no-such-value")


def test_default_labelled_set_is_large_and_split():
    from livo.values.evaluation import default_labelled_path, load_labelled

    rows = load_labelled(default_labelled_path())
    assert len(rows) >= 300
    benign = [r for r in rows if r.category.startswith("benign")]
    assert len(benign) >= 80 and sum(r.category == "benign-hard" for r in rows) >= 40
    assert {r.split for r in rows} == {"calibration", "test"}
    registry = load_registry(builtin_registry_path("default"))
    assert {r.label for r in rows} - {None} == set(registry.ids)
    exemplars = {t for v in registry.values for t in v.exemplars.positive + v.exemplars.negative}
    exemplars |= set(registry.benign_exemplars)
    assert not exemplars & {r.prompt for r in rows}, "labelled prompts must not be exemplars"
    assert Path(default_labelled_path()).suffix == ".jsonl"
