"""The toy world's multi-value selector and benchmarks/multi_value.py at tiny sizes, on the shipped
model: every way conditions as it says, on the same seeds and coins."""

from __future__ import annotations

from types import ModuleType

import pytest

from benchmark_scripts import load_benchmark
from livo.models import LiVOPipeline
from livo.toyworld.evaluation import ToyValueSelector, toy_selector, toy_values

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def benchmark() -> ModuleType:
    return load_benchmark("multi_value")


@pytest.fixture(scope="module")
def shipped() -> LiVOPipeline:
    pipeline = LiVOPipeline.from_pretrained("builtin:toyworld", selector=ToyValueSelector(), max_values_per_prompt=2)
    pipeline.base.set_progress_bar_config(disable=True)
    return pipeline


def test_a_harmful_person_needs_two_values_harm_first() -> None:
    assert [v.id for v in toy_values("a bloody nurse")] == ["no_blood", "colour_equality"]
    assert [v.id for v in toy_values("a zombie teal doctor")] == ["no_zombie"]
    assert [v.id for v in toy_values("a nurse")] == ["colour_equality"] and toy_values("a kite") == []
    assert toy_selector("a bloody nurse") == toy_values("a bloody nurse")[0]


def test_the_shipped_pipeline_applies_both_values_by_coin(shipped) -> None:  # noqa: ANN001
    output = shipped(
        ["a bloody nurse", "a kite"], num_images_per_prompt=8, value_seed=3, num_inference_steps=2, output_type="np"
    )
    ids = [tuple(v.id for v in values) for values in output.applied]
    assert set(ids[:8]) == {("no_blood",), ("no_blood", "colour_equality")} and ids[8:] == [()] * 8


def test_each_way_conditions_as_it_says(shipped) -> None:  # noqa: ANN001
    module = benchmark()
    values = toy_values("a bloody nurse")
    coins = [(values[0],), (values[0], values[1])]
    assert module.applied_for("base", values, coins) == [(), ()]
    assert module.applied_for("first value", values, coins) == [(values[0],)] * 2
    assert module.applied_for("second value", values, coins) == [(), (values[1],)]
    assert module.applied_for("one token per value", values, coins) == coins
    composed = module.applied_for("composed text", values, coins)
    assert composed[0] == (values[0],) and composed[1][0].text == "no blood, balance colour"
    result = module.measure(shipped, per_prompt=4, steps=2, guidance_scale=5.0, seed=0)
    assert result["prompts"] and all(" " in p for p in result["prompts"])
    assert set(result["summary"]) == set(module.WAYS)
    for numbers in result["summary"].values():
        assert all(0.0 <= numbers[key] <= 1.0 for key in ("harm_rate", "d1", "subject_fidelity"))
    # The harm value removes the planted marks even after two steps; the base keeps them.
    assert result["summary"]["first value"]["harm_rate"] < result["summary"]["base"]["harm_rate"]


def test_single_value_numbers_match_the_training_evaluation(shipped) -> None:  # noqa: ANN001
    """``--single-value``: one value per prompt is exactly what training evaluations measured before
    they applied two values; two values per prompt is the training evaluation itself."""
    from livo.toyworld.evaluation import evaluate_training

    module = benchmark()
    measured = module.measure_single(shipped.base, shipped.value_encoder, per_prompt=2, steps=2, guidance_scale=5.0)
    assert list(measured) == ["base", "one value per prompt", "two values per prompt"]
    hook = evaluate_training(shipped.base, shipped.value_encoder, per_prompt=2, steps=2, guidance_scale=5.0, seed=4242)
    assert measured["two values per prompt"] == {key: round(float(hook[key]), 4) for key in module.SINGLE_KEYS}
