"""The generation engine with two values per prompt (``model.max_values_per_prompt: 2``), on the
shipped toy model and the real selector: auto applies the selector's values (harm on every image,
colour by coin), a request may name both, and either gives the images LiVOPipeline gives."""

from __future__ import annotations

import io

import numpy as np
import pytest

from livo.serve.config import ModelConfig, ValuesConfig
from livo.serve.engine import GenerationEngine, GenerationJob, load_pipeline, selector_from_config
from livo.serve.metrics import image_value_label

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def engine() -> GenerationEngine:
    pipeline = load_pipeline(ModelConfig(device="cpu", max_values_per_prompt=2))
    return GenerationEngine(pipeline, selector_from_config(ValuesConfig()))


def pixels(result) -> np.ndarray:  # noqa: ANN001
    from PIL import Image

    return np.stack([np.asarray(Image.open(io.BytesIO(png)).convert("RGB")) for png in result.images])


def test_auto_applies_both_values_of_a_harmful_person(engine) -> None:  # noqa: ANN001
    [result] = engine.generate([GenerationJob("a zombie nurse", seed=4, num_images=8, steps=3)])
    assert result.selection["value_ids"] == ["no_zombie", "colour_equality"]
    assert all(ids[0] == "no_zombie" for ids in result.applied_all)
    assert {tuple(ids) for ids in result.applied_all} == {("no_zombie",), ("no_zombie", "colour_equality")}
    assert result.applied == ["no_zombie"] * 8
    # /metrics counts each image under every value it got, not under its first one only.
    labels = {image_value_label(ids) for ids in result.applied_all}
    assert labels == {"no_zombie", "no_zombie+colour_equality"} and image_value_label([]) == "none"


def test_named_values_give_the_pipeline_s_images_and_auto_the_same(engine) -> None:  # noqa: ANN001
    import torch

    from livo.models import ValueChoice

    job = GenerationJob("a bloody doctor", seed=7, num_images=4, steps=3, values=("no_blood", "colour_equality"))
    [named] = engine.generate([job])
    [automatic] = engine.generate([GenerationJob("a bloody doctor", seed=7, num_images=4, steps=3)])
    assert named.selection["stage"] == "requested" and named.applied_all == automatic.applied_all
    np.testing.assert_array_equal(pixels(named), pixels(automatic))

    registry = engine.registry
    chosen = [ValueChoice(v, registry.value(v).text, registry.value(v).kind) for v in job.values]

    class Both:
        def __call__(self, prompt: str) -> ValueChoice:
            return chosen[0]

        def choose_all(self, prompts: list[str]) -> list[list[ValueChoice]]:
            return [chosen for _ in prompts]

    output = engine.pipeline(
        job.prompt,
        job.num_images,
        generator=torch.Generator().manual_seed(job.seed),
        selector=Both(),
        num_inference_steps=job.steps,
        guidance_scale=job.guidance,
        output_type="np",
    )
    expected = np.round(np.asarray(output.images) * 255).astype(np.uint8)
    assert [[v.id for v in values] for values in output.applied] == named.applied_all
    np.testing.assert_allclose(pixels(named), expected, atol=1)


def test_an_unknown_value_in_a_list_is_named(engine) -> None:  # noqa: ANN001
    from livo.errors import ConfigError

    with pytest.raises(ConfigError, match=r"unknown value ids \['no_gore'\]"):
        engine.generate([GenerationJob("a doctor", seed=1, steps=2, values=("colour_equality", "no_gore"))])
