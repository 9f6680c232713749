"""The generation engine with two values per prompt (``model.max_values_per_prompt: 2``), on the
shipped toy model and the real selector: auto applies the selector's values (harm on every image,
colour by coin), a request may name both, and either gives the images LiVOPipeline gives; the web
page of such a service names several values."""

from __future__ import annotations

import io

import numpy as np
import pytest

from livo.serve.config import ModelConfig, ValuesConfig
from livo.serve.engine import GenerationEngine, GenerationJob, load_pipeline, selector_from_config
from livo.serve.metrics import image_value_label
from serve_running import running_service

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def engine() -> GenerationEngine:
    pipeline = load_pipeline(ModelConfig(device="cpu", max_values_per_prompt=2))
    return GenerationEngine(pipeline, selector_from_config(ValuesConfig()))


def pixels(result) -> np.ndarray:  # noqa: ANN001
    from PIL import Image

    return np.stack([np.asarray(Image.open(io.BytesIO(png)).convert("RGB")) for png in result.images])


def test_the_model_folder_s_saved_settings_are_served_unless_the_config_sets_them(tmp_path) -> None:
    """The service's defaults (0.5 and 1) replaced what save_pretrained wrote into the folder's
    livo_pipeline.json: a model saved to apply two values was served applying one."""
    from livo.models.pipeline import LiVOPipeline

    saved = LiVOPipeline.from_pretrained("builtin:toyworld", bias_probability=0.75, max_values_per_prompt=2)
    saved.save_pretrained(tmp_path / "model")
    pipeline = load_pipeline(ModelConfig(base=str(tmp_path / "model"), device="cpu"))
    assert (pipeline.bias_probability, pipeline.max_values_per_prompt) == (0.75, 2)
    config = ModelConfig(base=str(tmp_path / "model"), device="cpu", bias_probability=0.25, max_values_per_prompt=1)
    pipeline = load_pipeline(config)
    assert (pipeline.bias_probability, pipeline.max_values_per_prompt) == (0.25, 1)


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
        num_images_per_prompt=job.num_images,
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


TOKEN = "multi-value-page-token-0123456789"


@pytest.fixture(scope="module")
def service(ray_local):  # noqa: ANN001, ANN201
    """A running service that applies up to two values per prompt; shut down afterwards."""
    from livo.serve.config import parse_config, token_digest

    config = parse_config(
        {
            "model": {"max_values_per_prompt": 2},
            "generator": {"num_replicas": 1, "num_cpus": 1},
            "limits": {"default_steps": 3, "max_steps": 10},
            "auth": {"token_sha256": token_digest(TOKEN)},
        }
    )
    with running_service(config) as url:
        yield url


def test_the_page_sends_the_ticked_values_together(service, browser) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(service + "/")
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.ID, "prompt").send_keys("a bloody doctor")
    browser.find_element(By.ID, "seed").send_keys("7")
    # The values load once the token is in: the box for each value appears, as the service applies two.
    browser.find_element(By.ID, "token").send_keys("\t")
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#value-boxes input"))
    assert browser.find_element(By.ID, "several").is_displayed()
    assert browser.find_element(By.ID, "max-values").text == "2"
    for value_id in ("no_blood", "colour_equality"):
        browser.find_element(By.CSS_SELECTOR, f"#value-boxes input[value='{value_id}']").click()
    assert not browser.find_element(By.ID, "value").is_enabled()  # the ticked values replace it
    browser.find_element(By.ID, "generate").click()

    def both_rows_loaded(driver):  # noqa: ANN001, ANN202
        rows = [driver.find_elements(By.CSS_SELECTOR, f"#{row} img") for row in ("base-images", "aligned-images")]
        return all(len(images) == 4 for images in rows)

    WebDriverWait(browser, 60).until(both_rows_loaded)
    text = browser.find_element(By.ID, "selection-text").text
    assert "Values “no_blood” + “colour_equality” were requested explicitly" in text, text
    captions = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#aligned-images figcaption")]
    # The harm value on every image, the bias value by its coin: at seed 7 on some images only.
    assert set(captions) == {"value: no_blood", "values: no_blood + colour_equality"}, captions
