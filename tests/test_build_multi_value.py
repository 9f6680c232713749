"""Dataset construction with two values per prompt (no Ray: the planner and one pair generator): a
harmful scene with a person gets one record for its harm value and its bias value together, whose
aligned image is free of the harm and shows the class the violating image does not."""

from __future__ import annotations

import io
from collections import Counter

import numpy as np
import pytest

from livo.data.schema import pair_table
from livo.data.shards import ShardConfig, ShardWriter
from livo.dataset import parse_build_config
from livo.dataset.build_report import BuildReport
from livo.dataset.generate import PairGenerator
from livo.dataset.job import _finish, worker_spec
from livo.dataset.plan import check_value_ids, plan_records, selector_for
from livo.dataset.records import record_id
from livo.dataset.rewrite import RuleRewriter
from livo.errors import ConfigError
from livo.toyworld.judge import ToyWorldJudge
from livo.values.registry import builtin_registry_path, load_registry

pytestmark = pytest.mark.usefixtures("torch_one_thread")

TOY = load_registry(builtin_registry_path("toyworld"))
PROMPTS = ["a bloody nurse", "a zombie doctor", "a teacher", "a bloody kite"]


def build_config(tmp_path, max_values: int, value_samples: dict[str, int] | None = None):
    return parse_build_config(
        {
            "sources": {"generators": {"toyworld": {"count": 1, "seed": 0}}},
            "selection": {"registry": "toyworld", "max_values_per_prompt": max_values},
            "generation": {
                "steps": 8,
                "guidance_scale": 5.0,
                "samples_per_prompt": 6,
                "value_samples": value_samples or {},
            },
            "output": {"directory": str(tmp_path / "out")},
            "progress": False,
        }
    )


def decode(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_two_value_records_make_pairs_aligned_on_both_values(tmp_path) -> None:
    from livo.data.dedup import normalize

    config = build_config(tmp_path, 2)
    selector = selector_for(config, TOY)
    plan = plan_records(PROMPTS, config, TOY, selector, RuleRewriter(TOY))
    applied = {r.prompt: r.applied() for r in plan.records}
    assert applied == {
        "a bloody nurse": ("no_blood", "colour_equality"),
        "a zombie doctor": ("no_zombie", "colour_equality"),
        "a teacher": ("colour_equality",),
        "a bloody kite": ("no_blood",),
    }
    nurse = next(r for r in plan.records if r.prompt == "a bloody nurse")
    assert nurse.aligned_prompt == "a nurse" and nurse.record_id == record_id(
        normalize("a bloody nurse"), "no_blood+colour_equality", nurse.sample
    )
    # value_samples: a key for the two values together, else the first value's count.
    counted = build_config(tmp_path, 2, {"no_blood+colour_equality": 3, "no_blood": 2})
    check_value_ids(counted, TOY)
    samples = Counter(r.prompt for r in plan_records(PROMPTS, counted, TOY, selector, RuleRewriter(TOY)).records)
    assert samples == {"a bloody nurse": 3, "a bloody kite": 2, "a zombie doctor": 6, "a teacher": 6}
    with pytest.raises(ConfigError, match="generation.value_samples: unknown value id.*'fairness'"):
        check_value_ids(build_config(tmp_path, 2, {"no_blood+fairness": 3}), TOY)
    single = plan_records(PROMPTS, build_config(tmp_path, 1), TOY, selector, RuleRewriter(TOY))
    teacher = [r.record_id for r in plan.records if r.prompt == "a teacher"]
    assert teacher == [r.record_id for r in single.records if r.prompt == "a teacher"]  # one value: ids unchanged
    assert {r.applied() for r in single.records if r.prompt == "a bloody nurse"} == {("no_blood",)}

    result = PairGenerator(worker_spec(config, TOY)).generate([r.to_dict() for r in plan.records])
    kept = [row for row in result.kept if len(row["value_ids"]) == 2]
    assert kept, result.dropped
    judge = ToyWorldJudge()
    for row in kept:
        assert row["value_texts"] == ["no blood" if "bloody" in row["prompt"] else "no zombie", "balance colour"]
        assert row["category"].endswith("+bias/colour") and len(row["judge_scores"]) == 2
        images = np.stack([decode(row["violating_image"]), decode(row["aligned_image"])])
        for value_id in row["value_ids"]:
            violating, aligned = judge.judge(images, [row["prompt"]] * 2, TOY.value(value_id))
            if value_id == "colour_equality":
                assert aligned.attribute == row["aligned_class"] != violating.attribute
            else:
                assert not aligned.harmful
            assert aligned.subject
        assert row["aligned_class"] in row["aligned_prompt"].split()
        assert not {"bloody", "zombie"} & set(row["aligned_prompt"].split())

    # The build report counts pairs by every value of a record, not by its first one.
    with ShardWriter(tmp_path / "out", ShardConfig(splits={"train": 1.0}, row_group_bytes=4096)) as writer:
        writer.write(pair_table(result.kept))
    report = BuildReport(run_id="test", output=str(tmp_path / "out"))
    _finish(config, report, Counter())
    expected = Counter("+".join(row["value_ids"]) for row in result.kept)
    assert report.pairs_per_value == dict(expected) and any("+" in key for key in expected)
    assert f"value    {kept[0]['value_ids'][0]}+colour_equality: " in report.format()


def test_a_build_restricted_to_some_values_keeps_prompts_whose_first_value_is_another(tmp_path) -> None:
    """`selection.values` filters before the first value is taken: a bloody nurse is a colour prompt
    for a build of colour pairs (it was dropped as `value_not_built`, its first value being no_blood)."""
    config = parse_build_config(
        {
            "sources": {"generators": {"toyworld": {"count": 1, "seed": 0}}},
            "selection": {"registry": "toyworld", "values": ["colour_equality"]},
            "output": {"directory": str(tmp_path / "out")},
            "progress": False,
        }
    )
    plan = plan_records(PROMPTS, config, TOY, selector_for(config, TOY), RuleRewriter(TOY))
    assert {r.prompt: r.applied() for r in plan.records} == {
        "a bloody nurse": ("colour_equality",),
        "a zombie doctor": ("colour_equality",),
        "a teacher": ("colour_equality",),
    }
    assert plan.drops == {"value_not_built": 1}  # the kite has no colour value
    assert all(r.aligned_prompt is None for r in plan.records)  # the harm is not rewritten away


def test_a_record_of_two_bias_values_asks_a_class_of_each_attribute() -> None:
    """A gender-and-race record (the default registry's "a doctor" with max_values_per_prompt 2)
    compared its aligned image's gender with a race class, the last bias value's, and was always
    dropped. Each bias value now has its own target."""
    from livo.dataset.judging import bias_targets, record_drop_reason
    from livo.judges import ImageVerdict

    default = load_registry(builtin_registry_path("default"))
    gender, race, blood = (default.value(v) for v in ("gender-equality", "racial-equality", "no-blood"))
    violating = [ImageVerdict(attribute="male"), ImageVerdict(attribute="white")]
    targets = bias_targets([gender, race], violating, "record-1")
    assert targets is not None
    assert targets[0] in (gender.classes or {}) and targets[0] != "male"
    assert targets[1] in (race.classes or {}) and targets[1] != "white"
    aligned = [ImageVerdict(attribute=targets[0]), ImageVerdict(attribute=targets[1])]
    assert record_drop_reason([gender, race], violating, aligned, targets, True) is None
    unchanged_race = [ImageVerdict(attribute=targets[0]), ImageVerdict(attribute="white")]
    assert record_drop_reason([gender, race], violating, unchanged_race, targets, True) == "aligned_wrong_attribute"
    assert bias_targets([gender, race], [ImageVerdict(attribute="male"), ImageVerdict()], "record-1") is None
    # A harm beside a bias value: the pair contrasts the bias value, so the harm need not show.
    mixed = bias_targets([blood, gender], [ImageVerdict(harmful=False), ImageVerdict(attribute="female")], "r")
    assert mixed == [None, "male"]
    clean = [ImageVerdict(harmful=False), ImageVerdict(attribute="male")]
    assert (
        record_drop_reason(
            [blood, gender], [ImageVerdict(harmful=False), ImageVerdict(attribute="female")], clean, mixed, None
        )
        is None
    )
