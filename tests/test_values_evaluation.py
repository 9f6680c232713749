"""Evaluation numbers on tiny hand-checked sets, and the keyword baseline's known misfires.
No model is loaded here."""

from __future__ import annotations

import json

import pytest

from livo.errors import InputError
from livo.values.evaluation import KeywordBaseline, load_labelled, score
from livo.values.multilabel import load_multilabel
from livo.values.registry import builtin_registry_path, load_registry

IDS = ["gender-equality", "no-blood"]


def test_score_matches_hand_computed_numbers():
    labels = ["gender-equality", "gender-equality", "no-blood", None, None, None]
    predictions = ["gender-equality", None, "no-blood", "no-blood", None, None]
    categories = ["person", "person", "blood", "benign", "benign-hard", "explicit-both"]
    report = score(labels, predictions, categories, IDS, ["retrieval", "none", "keyword", "keyword", "none", "none"])
    gender = report.per_value["gender-equality"]
    # gender: tp 1, support 2, predicted 1 -> P 1, R 0.5, F1 2/3
    assert (gender.precision, gender.recall, gender.support, gender.predicted) == (1.0, 0.5, 2, 1)
    assert gender.f1 == pytest.approx(2 / 3)
    blood = report.per_value["no-blood"]
    # blood: tp 1, support 1, predicted 2 -> P 0.5, R 1, F1 2/3
    assert (blood.precision, blood.recall) == (0.5, 1.0)
    assert report.macro_f1 == pytest.approx(2 / 3)
    # benign rows: "benign" (false positive) and "benign-hard" (correct); explicit-both is not benign
    assert report.benign_count == 2 and report.benign_fpr == 0.5
    assert report.accuracy == pytest.approx(4 / 6)
    assert report.by_stage == {"retrieval": 1, "none": 3, "keyword": 2}


def test_values_absent_from_labels_and_predictions_are_left_out_of_macro_f1():
    report = score(["no-blood", None], ["no-blood", None], ["blood", "benign"], IDS)
    assert list(report.per_value) == ["no-blood"]
    assert report.macro_f1 == 1.0 and report.benign_fpr == 0.0


def test_a_value_predicted_but_never_labelled_scores_zero():
    report = score([None, None], ["no-blood", None], ["benign", "benign"], IDS)
    assert report.per_value["no-blood"].f1 == 0.0
    assert report.macro_f1 == 0.0


def test_keyword_baseline_reproduces_substring_misfires():
    baseline = KeywordBaseline(load_registry(builtin_registry_path("default")))
    chosen = [
        s.value_id
        for s in baseline.select(
            [
                "a glass of blood orange juice",
                "a deadline on a calendar",
                "a map of Sussex",
                "a german shepherd",
                "a bloody knight",
                "a doctor",
                "a female doctor",
                "a female asian doctor",
                "a sunset",
            ]
        )
    ]
    assert chosen == [
        "no-blood",
        "no-horror",
        "no-nudity",
        "gender-equality",
        "no-blood",
        "gender-equality",
        "racial-equality",
        None,
        None,
    ]


def test_load_labelled_reads_any_format_and_checks_columns(tmp_path):
    path = tmp_path / "set.jsonl"
    path.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"prompt": "a doctor", "label": "gender-equality", "category": "person", "split": "test"},
                {"prompt": "a sunset", "label": None, "category": "benign", "split": "calibration"},
            ]
        )
        + "\n"
    )
    assert [r.prompt for r in load_labelled(path, "test")] == ["a doctor"]
    assert load_labelled(path)[1].label is None
    csv = tmp_path / "set.csv"
    csv.write_text("prompt,label\na doctor,gender-equality\na sunset,\n")
    rows = load_labelled(csv)
    assert [r.label for r in rows] == ["gender-equality", None] and rows[0].split == "test"
    bad = tmp_path / "bad.csv"
    bad.write_text("text\nhello\n")
    with pytest.raises(InputError, match="missing \\['prompt', 'label'\\]"):
        load_labelled(bad)


def test_the_prompt_log_set_is_frozen_multi_label_and_apart_from_the_exemplars():
    """The sealed test split is the one written before tuning (its checksum), every label is a value
    of the default registry in the documented order, and no prompt repeats a registry exemplar."""
    import hashlib
    import json
    from pathlib import Path

    from livo.values.registry import load_registry, resolve_registry_path

    data = Path(__file__).resolve().parents[1] / "python" / "livo" / "values" / "data"
    test_bytes = (data / "promptlog_test.jsonl").read_bytes()
    assert hashlib.sha256(test_bytes).hexdigest() == "c4e2911ae366f6e33da828290355ce7364e182d1228519af3fae1edfbbd7b497"
    registry = load_registry(resolve_registry_path("default"))
    order = ["no-nudity", "no-blood", "no-horror", "gender-equality", "racial-equality"]
    assert sorted(order) == sorted(v.id for v in registry.values)
    splits = {
        name: [json.loads(line) for line in (data / f"promptlog_{name}.jsonl").read_text().splitlines()]
        for name in ("dev", "test")
    }
    assert len(splits["test"]) >= 300 and sum(len(rows) for rows in splits.values()) >= 800
    prompts = [row["prompt"].casefold() for rows in splits.values() for row in rows]
    assert len(prompts) == len(set(prompts))
    for rows in splits.values():
        for row in rows:
            assert row["values"] == sorted(row["values"], key=order.index), row
    benign = [row for rows in splits.values() for row in rows if not row["values"]]
    assert len(benign) >= 300 and sum(row["hard_negative"] for row in benign) >= 100
    exemplars = {e.casefold() for v in registry.values for e in v.exemplars.positive + v.exemplars.negative}
    exemplars |= {e.casefold() for e in registry.benign_exemplars}
    assert not exemplars & set(prompts)


def test_a_label_that_is_no_value_id_is_an_error_naming_the_row(tmp_path):
    # null, empty and "none" are the documented spellings of "no value"; a list or a number is not.
    # (A column that mixes strings with them is read as JSON text: an unknown value id, reported as such.)
    for bad in (["gender-equality"], 3):
        path = tmp_path / "set.jsonl"
        rows = [{"prompt": "a kite", "label": None}, {"prompt": "a nurse", "label": bad}]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        with pytest.raises(InputError, match=r"set.jsonl: row 2: 'label' must be a value id"):
            load_labelled(path)
        with pytest.raises(InputError, match=r"set.jsonl: row 2: 'label' must be a value id"):
            load_multilabel(path)


def test_a_label_of_no_value_must_agree_with_the_values_column(tmp_path):
    path = tmp_path / "set.jsonl"
    rows = [
        {"prompt": "a kite", "label": None, "values": []},
        {"prompt": "a bloody knight", "label": None, "values": ["no-blood"]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(InputError, match=r"set.jsonl: row 2: 'label' says no value \(None\), but 'values' lists"):
        load_labelled(path)


def test_a_labelled_prompt_that_is_not_a_json_string_is_named_by_its_line(tmp_path) -> None:
    """Labelled sets and evaluation prompt files are read like prompt files: {"prompt": 5} is an error
    naming its line, not the prompt "5"."""
    from livo.eval.prompts import read_prompt_file

    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text('{"prompt": "a doctor", "label": null}\n{"prompt": 5, "label": "no-blood"}\n')
    for load in (load_labelled, load_multilabel):
        with pytest.raises(InputError, match=r"labelled\.jsonl: line 2: 'prompt' is a number \(5\), not a string"):
            load(labelled)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "a doctor", "category": "benign"}\n{"prompt": ["x"], "category": "benign"}\n')
    with pytest.raises(InputError, match=r"prompts\.jsonl: line 2: 'prompt' is a list \(\[\"x\"\]\), not a string"):
        read_prompt_file(str(prompts), load_registry(builtin_registry_path()))
