"""Multi-label value selection: every value that applies, the value classifier, look-alike phrases,
stated attributes, and the reports of `livo values evaluate`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from livo.cli import main
from livo.errors import ConfigError, InputError
from livo.values.classifier import CLASSIFIER_FILE, ValueClassifier, fit_logistic
from livo.values.classifier_training import fit_value_classifier, training_rows
from livo.values.embedders import load_embedder
from livo.values.index import METADATA_FILE, build_index, save_index, update_classifier
from livo.values.matching import ExplicitAttributes, HarmKeywords, PersonNouns, normalize_text
from livo.values.multilabel import MultiLabelPrompt, format_multilabel, load_multilabel, score_multilabel
from livo.values.registry import builtin_registry_path, default_registry_path, load_registry
from livo.values.selector import Selection, ValueDecision, ValueSelector

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def minilm():
    return load_embedder("minilm")


@pytest.fixture(scope="module")
def registry():
    return load_registry(default_registry_path())


@pytest.fixture(scope="module")
def classified_index(tmp_path_factory, minilm, registry) -> Path:
    """The default registry's index with its value classifier, fitted on the shipped prompts."""
    folder = tmp_path_factory.mktemp("values") / "index"
    save_index(build_index(registry, minilm, registry_source=str(default_registry_path())), folder)
    selector = ValueSelector.load(folder, embedder=minilm)
    update_classifier(folder, fit_value_classifier(selector, training_rows(selector.registry)))
    return folder


def test_several_values_harm_first_with_reasons(classified_index, minilm):
    selector = ValueSelector.load(classified_index, embedder=minilm)
    assert selector.classifier is not None
    prompts = ["a bloody nurse in a hospital corridor", "a female doctor", "a blood orange on a plate", "a doctor"]
    found = {p: s for p, s in zip(prompts, selector.select(prompts))}
    bloody = found["a bloody nurse in a hospital corridor"]
    assert bloody.value_ids == ["no-blood", "gender-equality", "racial-equality"]
    assert bloody.value_id == "no-blood" and bloody.stage == "classifier"
    assert "keyword 'bloody'" in bloody.values[0].reason and "person noun 'nurse'" in bloody.values[1].reason
    assert found["a female doctor"].value_ids == ["racial-equality"]
    assert "stated gender 'female'" in found["a female doctor"].values[0].reason
    assert found["a blood orange on a plate"].value_ids == []
    assert found["a doctor"].value_ids == ["gender-equality", "racial-equality"]
    # The pipeline adapter applies the first value and can report them all.
    assert selector("a bloody nurse in a hospital corridor").id == "no-blood"
    assert [v.id for v in selector.choose_all(["a bloody nurse in a hospital corridor"])[0]] == bloody.value_ids


def test_threshold_rules_are_multi_label_too(tmp_path, minilm, registry):
    """Without a classifier (a registry without labelled prompts), the retrieval rules list every
    value; the first is today's single decision."""
    folder = tmp_path / "index"
    save_index(build_index(registry, minilm), folder)
    selector = ValueSelector.load(folder, embedder=minilm, check_registry_source=False)
    assert selector.classifier is None
    bloody, female = selector.select(["a bloody nurse", "a female doctor"])
    assert bloody.value_ids[0] == "no-blood" and bloody.stage == "keyword"
    assert "gender-equality" in bloody.value_ids
    assert female.value_ids == ["racial-equality"] and female.stage == "explicit-attribute"


def test_look_alikes_and_possessives_are_no_evidence_of_a_person(registry):
    nouns, attributes = PersonNouns(registry), ExplicitAttributes(registry)
    for text in ["king penguin colony on a beach", "cowboy boots on a porch", "a german shepherd on a leash"]:
        normalized = normalize_text(text)
        assert not nouns.present(normalized), text
        assert attributes.stated(normalized) == {}, text
    assert attributes.stated(normalize_text("men's running shoes on a shelf")) == {}
    assert nouns.present(normalize_text("a cowboy riding at dusk"))
    # Offsets survive blanking: the rewrite rule inserts before the first real person noun.
    match = nouns.first("a king penguin next to a sailor")
    assert match is not None and match.group(0) == "sailor"


def test_stated_attributes_cover_nationalities_and_other_languages(registry):
    attributes = ExplicitAttributes(registry)
    assert attributes.stated(normalize_text("a Finnish sailor on deck")) == {"race": "white"}
    assert attributes.stated(normalize_text("an arab merchant in a souk")) == {"race": "unlisted"}
    assert attributes.stated(normalize_text("una mujer vendiendo flores")) == {"gender": "female"}
    assert attributes.stated(normalize_text("a sailor on deck")) == {}


@pytest.mark.parametrize(
    ("prompt", "stated"),
    [
        # Stable Diffusion's weights and brackets, Danbooru's tags: a bracket or an underscore stood
        # between a modifier and its noun, and a count was glued to its noun, so nothing was stated.
        ("a (female:1.2) doctor", {"gender": "female"}),
        ("photo of a (black:1.3) ((female)) [pilot]", {"gender": "female", "race": "black"}),
        ("{asian} chef, <lora:detail_tweaker:0.8>", {"race": "asian"}),
        ("masterpiece, best quality, 1girl, nurse, hospital", {"gender": "female"}),
        ("2boys, soldiers", {"gender": "male"}),
        ("female_doctor, hospital", {"gender": "female"}),
        ("a (doctor:1.2), hospital", {}),
        ("<lora:woman_style:0.7> a doctor", {}),  # a file's name is not the prompt's content
        # A colour before hair or clothing describes those, and "black and white" is a photograph's.
        ("a black haired girl", {"gender": "female"}),
        ("a white robed priest", {}),
        ("black and white doctor portrait", {}),
        ("a black doctor in a white coat", {"race": "black"}),
    ],
)
def test_prompt_syntax_and_appearance_words_are_read_as_what_they_state(registry, prompt, stated):
    assert ExplicitAttributes(registry).stated(normalize_text(prompt)) == stated


def test_a_long_run_of_attribute_words_is_decided_in_linear_time(registry):
    # "african american" is one term or two: the search tried 2^n splits (18 repeats: 18 s).
    import time

    attributes = ExplicitAttributes(registry)
    started = time.perf_counter()
    assert attributes.stated(normalize_text("a black " + "african american " * 40 + "car")) == {}
    assert attributes.stated(normalize_text("a black " + "african american " * 40 + "doctor")) == {"race": "black"}
    assert time.perf_counter() - started < 1.0


def test_harm_words_in_prompt_syntax_are_keywords(registry):
    keywords = HarmKeywords(registry)
    for prompt in ["gore_(genre), 1girl", "a knight, blood_on_face", "a (bloody:1.4) knight", "((blood)), castle"]:
        hit = keywords.match(normalize_text(prompt))
        assert hit is not None and hit.value_id == "no-blood", prompt


def test_multilingual_harm_keywords(classified_index, minilm):
    selector = ValueSelector.load(classified_index, embedder=minilm)
    for prompt, value in [
        ("mujer desnuda en la playa", "no-nudity"),
        ("sangre en la pared", "no-blood"),
        ("verwesende Leiche im Keller", "no-horror"),
    ]:
        assert [d.value_id for d in selector.keyword_decisions(normalize_text(prompt))] == [value], prompt


def test_emoji_are_read_as_what_they_show(classified_index, minilm, registry):
    """Emoji are the content of many logged prompts; the English rules and embedder read them only
    once written out, with a skin tone or gender sign as a stated attribute of the person."""
    selector = ValueSelector.load(classified_index, embedder=minilm)
    expected = {
        "🩸 on fresh snow, macro": ["no-blood"],
        "🧟 in times square": ["no-horror"],
        "a 👮 directing traffic": ["gender-equality", "racial-equality"],
        "👩‍⚕️ portrait, studio light": ["racial-equality"],  # a woman: her gender is stated
        "🏃‍♀️ in the park at dawn": ["racial-equality"],
        "👩🏿‍⚕️ portrait, studio light": [],  # gender and skin colour stated
        "😍 sunset beach, golden hour": [],  # a face is a mood, not a person
        "🙏 thank you card, watercolor": [],  # folded hands, not a person
    }
    selected = selector.select(list(expected))
    assert {prompt: s.value_ids for prompt, s in zip(expected, selected)} == expected
    attributes = ExplicitAttributes(registry)
    assert attributes.stated(normalize_text("👨🏿‍🍳 cooking pasta")) == {"gender": "male", "race": "unlisted"}
    # A tone on a hand states nothing about the person beside it; "black" in a symbol's name is no race.
    assert attributes.stated(normalize_text("👍🏿 a doctor")) == {}
    assert attributes.stated(normalize_text("❤️ 🖤 a man")) == {"gender": "male"}


def test_full_width_text_is_embedded_as_the_plain_words(classified_index, minilm):
    """The rules read NFKC text but the embedder read full-width letters as they are (cosine to the
    plain prompt 0.02-0.07), so such a prompt lost its retrieval and classifier values."""
    selector = ValueSelector.load(classified_index, embedder=minilm)
    plain = ["a woman posing with no clothes on", "a terrifying creature"]
    wide = ["".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in p) for p in plain]
    assert [s.value_ids for s in selector.select(wide)] == [s.value_ids for s in selector.select(plain)]
    assert selector.select(plain)[0].value_ids[0] == "no-nudity"


def test_an_empty_prompt_gets_no_value_and_no_score(classified_index, minilm):
    selector = ValueSelector.load(classified_index, embedder=minilm)
    selections = selector.select(["", "   ", "a doctor"])
    assert [(s.value_ids, s.score, s.stage) for s in selections[:2]] == [([], 0.0, "none")] * 2
    assert selections[2].value_ids == ["gender-equality", "racial-equality"]


class AnswerAll:
    """A judge answering yes (or no) to every value it is asked about; it records what it was asked."""

    def __init__(self, yes: bool) -> None:
        self.yes, self.asked = yes, {}

    def applicable(self, prompt, candidates):
        self.asked[prompt] = [c.id for c in candidates]
        return [c.id for c in candidates] if self.yes else []


class PickLast:
    """A single-value judge: the last candidate (a bias value where one is asked about)."""

    def decide(self, prompt, candidates):
        return candidates[-1].id if candidates else None


def test_a_judge_re_decides_only_the_values_near_their_thresholds(classified_index, minilm):
    """The judge's answer replaced the whole selection: a keyword's harm value was dropped by a
    judge saying no, a stated attribute's bias value came back with one saying yes, and a
    single-value judge cut a selection to one value."""
    selector = ValueSelector.load(classified_index, embedder=minilm)
    prompts = ["a bloody knight", "a woman", "a doctor", "a female doctor at work"]
    before = {p: s.value_ids for p, s in zip(prompts, selector.select(prompts))}
    assert before["a bloody knight"][0] == "no-blood" and before["a doctor"] == ["gender-equality", "racial-equality"]
    no, yes = AnswerAll(False), AnswerAll(True)
    selector.judge = no
    said_no = {p: s.value_ids for p, s in zip(prompts, selector.select(prompts))}
    assert said_no["a bloody knight"][0] == "no-blood"  # keyword 'bloody': a rule, never asked
    assert "no-blood" not in no.asked.get("a bloody knight", [])
    selector.judge = yes
    said_yes = {p: s.value_ids for p, s in zip(prompts, selector.select(prompts))}
    for prompt in ("a woman", "a female doctor at work"):  # gender is stated: never steered
        assert "gender-equality" not in said_yes[prompt] and "gender-equality" not in yes.asked.get(prompt, [])
    selector.judge = PickLast()
    selector.classifier_judge_band = 1.0  # every value is near: the judge is asked about all it may
    picked = {p: s.value_ids for p, s in zip(prompts, selector.select(prompts))}
    # Bias values are one decision: a judge naming one applies both; the keyword's value stays.
    assert picked["a doctor"] == ["gender-equality", "racial-equality"]
    assert picked["a bloody knight"] == ["no-blood", "gender-equality", "racial-equality"]


def test_without_a_classifier_the_judge_holds_bias_values_to_the_person_noun_thresholds(tmp_path, minilm, registry):
    folder = tmp_path / "index"
    save_index(build_index(registry, minilm, registry_source=str(default_registry_path())), folder)
    selector = ValueSelector.load(folder, embedder=minilm)
    prompt = "tourists stumbling upon skeletons rising from their graves"
    assert selector.select([prompt])[0].value_ids == ["no-horror", "gender-equality", "racial-equality"]
    judge = AnswerAll(True)
    selector.judge, selector.judge_band = judge, 0.05
    # The bias values passed at the person-noun threshold, far above it: not asked, not dropped.
    assert selector.select([prompt])[0].value_ids == ["no-horror", "gender-equality", "racial-equality"]
    assert not {"gender-equality", "racial-equality"} & set(judge.asked.get(prompt, []))


def test_fit_logistic_reaches_the_penalised_optimum():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((300, 6))
    y = (x @ np.array([2.0, -1.0, 0.5, 0.0, 0.0, 1.0]) + 0.3 * rng.standard_normal(300) > 0).astype(np.float64)
    weights, intercept = fit_logistic(x, y, l2=2.0)
    p = 1.0 / (1.0 + np.exp(-(x @ weights.astype(np.float64) + intercept)))
    # The gradient of the penalised log-loss vanishes at the optimum; the intercept is not penalised.
    assert np.abs(x.T @ (p - y) + 2.0 * weights).max() < 1e-3
    assert abs(float((p - y).sum())) < 1e-3
    assert weights[0] > 1.0 and weights[1] < -0.5


def test_classifier_round_trips_and_damage_is_a_clear_error(tmp_path, classified_index, minilm):
    folder = tmp_path / "copy"
    shutil.copytree(classified_index, folder)
    selector = ValueSelector.load(folder, embedder=minilm)
    original = selector.classifier
    assert original is not None and original.targets == ["no-nudity", "no-blood", "no-horror", "person"]
    data, meta = original.to_bytes()
    again = ValueClassifier.from_bytes(data, meta, "x")
    assert np.array_equal(again.weights, original.weights) and np.array_equal(again.thresholds, original.thresholds)
    cv = original.summary["cross_validated"]
    assert isinstance(cv, dict) and 0.0 <= cv["benign_fpr"] <= 0.05 and cv["macro_f1"] > 0.8

    (folder / CLASSIFIER_FILE).write_bytes(data[:-8] + b"\0" * 8)
    with pytest.raises(InputError, match=r"classifier.safetensors: corrupt value classifier"):
        ValueSelector.load(folder, embedder=minilm)
    (folder / CLASSIFIER_FILE).unlink()
    with pytest.raises(InputError, match=r"classifier.safetensors: the index's value classifier is missing"):
        ValueSelector.load(folder, embedder=minilm)

    # Features that no longer match the selector's are refused, never misread.
    meta = json.loads((classified_index / METADATA_FILE).read_text())
    renamed = dict(meta["classifier"], feature_names=[f"x{i}" for i in range(len(meta["classifier"]["feature_names"]))])
    with pytest.raises(ConfigError, match="fitted on other values or features"):
        index = selector.index
        index.classifier = ValueClassifier.from_bytes(data, renamed, "x")
        ValueSelector(index, minilm)


def test_score_multilabel_counts_each_value_and_benign_false_positives():
    rows = [
        MultiLabelPrompt("a bloody nurse", ("no-blood", "gender-equality"), "multi-value"),
        MultiLabelPrompt("a kite", (), "benign"),
        MultiLabelPrompt("a blood orange", (), "hard-negative", hard_negative=True),
        MultiLabelPrompt("a doctor", ("gender-equality",), "person"),
    ]

    def selection(*values: str) -> Selection:
        return Selection.of([ValueDecision(v, 0.9, "classifier", "r") for v in values], 0.0, "none")

    selections = [selection("no-blood"), selection(), selection("no-blood"), selection("gender-equality")]
    report = score_multilabel(rows, selections, ["gender-equality", "no-blood"])
    blood, gender = report.per_value["no-blood"], report.per_value["gender-equality"]
    assert (blood.precision, blood.recall) == (0.5, 1.0)
    assert (gender.precision, gender.recall) == (1.0, 0.5)
    assert report.benign_fpr == 0.5 and report.benign_count == 2
    assert report.exact_match == 0.5
    assert report.confusion["none"] == {"none": 1, "no-blood": 1}
    assert report.confusion["gender-equality"] == {"no-blood": 1, "gender-equality": 1}
    # As wrong as each other, but the false alarm was confident: it ranks first.
    assert [e.prompt for e in report.errors] == ["a blood orange", "a bloody nurse"]
    assert report.errors[0].added == ["no-blood"] and report.errors[1].missed == ["gender-equality"]


def test_labelled_files_are_checked(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text(
        json.dumps({"prompt": "a kite", "values": []})
        + "\n"
        + json.dumps({"prompt": "a doctor", "values": ["gender-equality"]})
        + "\n"
    )
    assert [r.values for r in load_multilabel(good)] == [(), ("gender-equality",)]
    single = tmp_path / "single.jsonl"
    single.write_text(json.dumps({"prompt": "a doctor", "label": "gender-equality"}) + "\n")
    assert load_multilabel(single)[0].values == ("gender-equality",)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "a doctor", "values": "gender-equality"}) + "\n")
    with pytest.raises(InputError, match=r"bad.jsonl: row 1: 'values' must be a list of value ids"):
        load_multilabel(bad)


def test_cli_select_writes_the_value_list_and_evaluate_reports_errors(tmp_path, classified_index, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a bloody nurse\na kite\na female doctor\n")
    out = tmp_path / "out.parquet"
    assert (
        main(["values", "select", "--index", str(classified_index), "--input", str(prompts), "--output", str(out)]) == 0
    )
    table = pq.read_table(out)
    assert table.column("value_ids").to_pylist() == [
        ["no-blood", "gender-equality", "racial-equality"],
        [],
        ["racial-equality"],
    ]
    assert table.column("value_id").to_pylist() == ["no-blood", None, "racial-equality"]
    assert all(
        len(r) == len(v) for r, v in zip(table.column("reasons").to_pylist(), table.column("value_ids").to_pylist())
    )
    assert "1 prompts with several values" in capsys.readouterr().out
    # CSV has no lists: the list columns are JSON text, read back to the same values.
    csv = tmp_path / "out.csv"
    assert (
        main(["values", "select", "--index", str(classified_index), "--input", str(prompts), "--output", str(csv)]) == 0
    )
    written = pl.read_csv(csv)
    assert [json.loads(cell) for cell in written["value_ids"]] == table.column("value_ids").to_pylist()
    assert [json.loads(cell) for cell in written["reasons"]] == table.column("reasons").to_pylist()
    capsys.readouterr()

    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text(
        "".join(
            json.dumps({"prompt": p, "values": v, "category": c}) + "\n"
            for p, v, c in [
                ("a bloody nurse", ["no-blood", "gender-equality", "racial-equality"], "multi-value"),
                ("a kite over a beach", [], "benign"),
                ("a lighthouse", ["gender-equality"], "person"),
            ]
        )
    )
    report = tmp_path / "report.json"
    args = ["values", "evaluate", "--index", str(classified_index), "--labelled", str(labelled), "--json", str(report)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "confusion (rows: labelled, columns: selected" in printed
    assert "worst 1 errors:" in printed and "'a lighthouse' [person] expected ['gender-equality']" in printed
    assert "none of these prompts was used to fit the value classifier" in printed
    numbers = json.loads(report.read_text())
    assert numbers["selector"]["per_value"]["no-blood"]["recall"] == 1.0
    assert numbers["selector"]["errors"][0]["missed"] == ["gender-equality"]

    assert main(["values", "evaluate", "--index", str(classified_index), "--errors", "0"]) == 0
    assert "note: the value classifier was fitted on 648 of these 648 prompts" in capsys.readouterr().out

    # Calibrating retrieval thresholds on an index that decides with its classifier says so.
    copy = tmp_path / "calibrated"
    shutil.copytree(classified_index, copy)
    assert main(["values", "calibrate", str(copy)]) == 0
    assert "note: this index decides with its value classifier" in capsys.readouterr().out


def test_obfuscated_and_misspelt_harm_words_are_read_and_real_words_are_not(classified_index, minilm):
    selector = ValueSelector.load(classified_index, embedder=minilm)
    assert "baked" in selector.fuzzy.protected and "laughter" in selector.fuzzy.protected
    prompts = ["bl00dy handprints on a white wall", "a n.a.k.e.d man in a forest", "baked bread on a table"]
    bloody, naked, bread = selector.select(prompts)
    assert bloody.value_id == "no-blood" and "keyword 'bloody' in an obfuscated spelling" in bloody.values[0].reason
    assert naked.value_id == "no-nudity"
    assert bread.value_ids == []


def test_bad_prompts_get_a_decision(classified_index, minilm):
    selector = ValueSelector.load(classified_index, embedder=minilm)
    prompts = [
        "",
        "   ",
        "x" * 10_000,
        "a doctor " * 1200,
        "一个医生 a doctor врач 의사",
        "\x00\x01 bloody",
        "🩸 zombie 🧟",
    ]
    selections = selector.select(prompts)
    assert [s.value_ids for s in selections[:3]] == [[], [], []]
    assert selections[3].value_ids == ["gender-equality", "racial-equality"]
    assert selections[5].value_id == "no-blood" and selections[6].value_id == "no-horror"


def test_a_file_with_invalid_utf8_is_a_clear_error(tmp_path, classified_index, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"a doctor\n\xff\xfe bad bytes\n")
    args = [
        "values",
        "select",
        "--index",
        str(classified_index),
        "--input",
        str(bad),
        "--output",
        str(tmp_path / "o.parquet"),
    ]
    assert main(args) == 2
    assert "bad.txt: line 2 is not valid UTF-8" in capsys.readouterr().err


@pytest.fixture(scope="module")
def toy_index(tmp_path_factory, minilm) -> Path:
    """The toy world's index, without a value classifier."""
    folder = tmp_path_factory.mktemp("values") / "toy-index"
    save_index(build_index(load_registry(builtin_registry_path("toyworld")), minilm), folder)
    return folder


TOY_TRAINING = [
    ("a doctor", ["colour_equality"]),
    ("a nurse", ["colour_equality"]),
    ("an engineer", ["colour_equality"]),
    ("a teacher", ["colour_equality"]),
    ("a bloody doctor", ["no_blood", "colour_equality"]),
    ("a bloody kite", ["no_blood"]),
    ("a zombie", ["no_zombie"]),
    ("a zombie box", ["no_zombie"]),
    ("a ball", []),
    ("a kite", []),
    ("a box", []),
    ("a house", []),
]


def _write_training(path: Path, rows: list[tuple[str, list[str]]]) -> Path:
    path.write_text("".join(json.dumps({"prompt": p, "values": v}) + "\n" for p, v in rows))
    return path


def _fit_refused(toy_index: Path, training: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Runs fit-classifier, which must refuse ``training`` cleanly and leave the index as it was."""
    assert main(["values", "fit-classifier", str(toy_index), "--training", str(training)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"{training}: " in err
    assert json.loads((toy_index / METADATA_FILE).read_text())["classifier"] is None
    return err


def test_too_few_training_prompts_are_an_input_error_naming_the_file(tmp_path, toy_index, minilm, capsys):
    training = _write_training(tmp_path / "few.jsonl", TOY_TRAINING[:4])
    selector = ValueSelector.load(toy_index, embedder=minilm)
    with pytest.raises(InputError, match=r"few.jsonl: the value classifier needs at least 10 labelled prompts, got 4"):
        fit_value_classifier(selector, training_rows(selector.registry, [training]), source=str(training))
    assert "needs at least 10 labelled prompts, got 4" in _fit_refused(toy_index, training, capsys)


def test_training_without_benign_rows_is_refused(tmp_path, toy_index, minilm, capsys):
    # Every row has a value: fitted, every prompt ("a ball") would get one.
    training = _write_training(tmp_path / "no-benign.jsonl", [(p, v or ["colour_equality"]) for p, v in TOY_TRAINING])
    selector = ValueSelector.load(toy_index, embedder=minilm)
    with pytest.raises(InputError, match=r"no-benign.jsonl: no row has an empty 'values' list .*cannot learn when"):
        fit_value_classifier(selector, training_rows(selector.registry, [training]), source=str(training))
    assert "no row has an empty 'values' list" in _fit_refused(toy_index, training, capsys)


def test_training_without_a_value_is_refused_naming_the_value(tmp_path, toy_index, capsys):
    # The classifier decides harm values alone: one never labelled would never be applied.
    no_zombie = [(p, [v for v in values if v != "no_zombie"]) for p, values in TOY_TRAINING]
    err = _fit_refused(toy_index, _write_training(tmp_path / "no-zombie.jsonl", no_zombie), capsys)
    assert "no row lists the harm value(s) ['no_zombie']" in err
    # Bias values share the person target: with no person in any row they could never apply.
    no_person = [(p, [v for v in values if v != "colour_equality"]) for p, values in TOY_TRAINING]
    err = _fit_refused(toy_index, _write_training(tmp_path / "no-person.jsonl", no_person), capsys)
    assert "no row shows a person, so the value classifier could never apply ['colour_equality']" in err


def test_build_index_checks_its_training_files_before_embedding(tmp_path, capsys):
    training = _write_training(tmp_path / "few.jsonl", TOY_TRAINING[:4])
    output = tmp_path / "index"
    assert main(["values", "build-index", "toyworld", "-o", str(output), "--training", str(training)]) == 2
    assert f"{training}: the value classifier needs at least 10" in capsys.readouterr().err
    assert not output.exists()


def test_a_set_without_benign_rows_reports_no_benign_rate():
    rows = [MultiLabelPrompt("a doctor", ("gender-equality",), "unknown"), MultiLabelPrompt("a kite", (), "unknown")]
    report = score_multilabel(rows, [Selection.of([], 0.0, "none")] * 2, ["gender-equality"])
    assert report.benign_count == 0
    text = format_multilabel("selector", report, ["gender-equality"])
    assert "benign FPR n/a (no benign rows: rows with a 'category' starting with 'benign'" in text
    assert "0 of 0 benign" not in text
