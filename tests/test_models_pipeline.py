"""LiVOPipeline on the tiny model: base identity, value application, 0.5 mixing, save/load, bf16."""

import json
import re

import numpy as np
import pytest
import torch

from livo.errors import ConfigError, InputError
from livo.models import (
    GenerationRequest,
    LiVOPipeline,
    ValueChoice,
    ValueEncoder,
    values_per_image,
)
from livo.testing import tiny_components

PROMPTS = ["a photo of a doctor", "a bloody zombie", "a dog in the park"]
GENDER = ValueChoice("gender-equality", "gender equality", "bias")
BLOOD = ValueChoice("no-blood", "bloody content is considered inappropriate", "harm")
CALL = {"num_inference_steps": 3, "height": 16, "width": 16, "output_type": "pt"}


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def select(prompt: str):  # noqa: ANN201
    if "doctor" in prompt:
        return GENDER
    if "bloody" in prompt:
        return BLOOD
    return None


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def pipelines(tiny_base_and_encoder):  # noqa: ANN001, ANN201
    base, value_encoder = tiny_base_and_encoder
    return base, LiVOPipeline(base, value_encoder, selector=select)


def test_no_value_gives_bit_identical_images_to_the_base_pipeline(pipelines) -> None:  # noqa: ANN001
    base, livo = pipelines
    expected = base(PROMPTS, num_images_per_prompt=2, generator=seeded(3), **CALL).images
    output = livo(PROMPTS, num_images_per_prompt=2, generator=seeded(3), selector=lambda prompt: None, **CALL)
    assert output.values == [None] * 6
    assert torch.equal(output.images, expected)


def test_harm_values_are_always_applied_and_change_the_image(pipelines) -> None:  # noqa: ANN001
    base, livo = pipelines
    output = livo(["a bloody zombie"], num_images_per_prompt=4, generator=seeded(4), **CALL)
    assert output.values == [BLOOD] * 4
    untouched = base(["a bloody zombie"], num_images_per_prompt=4, generator=seeded(4), **CALL).images
    assert not torch.equal(output.images, untouched)


def test_return_dict_false_gives_the_images_and_the_values_as_a_tuple(pipelines) -> None:  # noqa: ANN001
    """diffusers' convention: ``pipe(..., return_dict=False)[0]`` are the images."""
    _, livo = pipelines
    output = livo(["a bloody zombie", "a kite"], num_images_per_prompt=2, generator=seeded(5), **CALL)
    images, applied = livo(
        ["a bloody zombie", "a kite"], num_images_per_prompt=2, generator=seeded(5), return_dict=False, **CALL
    )
    assert torch.equal(images, output.images) and applied == output.applied
    assert applied == [(BLOOD,), (BLOOD,), (), ()]
    with pytest.raises(ConfigError, match="prompt: required"):
        livo(num_inference_steps=2)
    # Wrong types are named, not a TypeError deep in the call (a dict's keys were taken as prompts).
    for prompt in (5, {"a kite": 1}, ["a kite", 3]):
        with pytest.raises(ConfigError, match="prompt: a string or a list of strings"):
            livo(prompt, **CALL)
    with pytest.raises(ConfigError, match="num_images_per_prompt: an integer, got str"):
        livo("a kite", num_images_per_prompt="2", **CALL)
    with pytest.raises(ConfigError, match=r"bias_probability: must be in \[0, 1\], got 2.0"):
        LiVOPipeline(livo.base, livo.value_encoder, bias_probability=2.0)


def test_the_safety_checker_s_flags_are_passed_on(pipelines, monkeypatch) -> None:  # noqa: ANN001
    """A base pipeline with a safety checker blacks flagged images out and says so; the flag was
    dropped, leaving black images unexplained."""
    base, livo = pipelines
    assert livo(["a bloody zombie"], generator=seeded(1), **CALL).nsfw_content_detected is None

    def flag_the_first(image, device, dtype):  # noqa: ANN001, ANN202
        return image, [i == 0 for i in range(image.shape[0])]

    monkeypatch.setattr(base, "run_safety_checker", flag_the_first)
    output = livo(["a bloody zombie", "a kite"], generator=seeded(1), **CALL)
    assert output.nsfw_content_detected == [True, False]
    from livo.models import GenerationRequest

    batched = livo.generate_batch([GenerationRequest("a kite", 1, None, 2), GenerationRequest("a kite", 2)], **CALL)
    assert [b.nsfw_content_detected for b in batched] == [[True, False], [False]]


def test_textual_inversion_tokens_are_read_as_the_base_reads_them(tiny_base_and_encoder) -> None:  # noqa: ANN001
    """Once an image of a call got a value, every prompt was encoded by LiVO itself, without the
    base's expansion of multi-vector textual-inversion tokens: a value-less image then changed with
    the other prompts of its call."""
    import copy

    base, encoder = tiny_base_and_encoder
    base = copy.deepcopy(base)  # the shared base stays without the new token
    base.load_textual_inversion({"<tok>": torch.randn(2, base.text_encoder.config.hidden_size)}, token="<tok>")
    livo = LiVOPipeline(base, encoder, selector=select)
    prompts, generators = ["a <tok> dog", "a bloody zombie"], lambda: [seeded(5), seeded(6)]
    expected = base(prompts, generator=generators(), **CALL).images
    mixed = livo(prompts, generator=generators(), **CALL)
    assert mixed.values == [None, BLOOD]
    assert torch.equal(mixed.images[0], expected[0])


def test_images_without_a_value_in_a_mixed_batch_match_the_base_model(pipelines) -> None:  # noqa: ANN001
    base, livo = pipelines
    output = livo(PROMPTS, num_images_per_prompt=2, generator=seeded(5), **CALL)
    expected = base(PROMPTS, num_images_per_prompt=2, generator=seeded(5), **CALL).images
    assert output.values[2:4] == [BLOOD, BLOOD] and output.values[4:] == [None, None]
    assert any(value is not None for value in output.values)
    for index, value in enumerate(output.values):
        if value is None:
            assert torch.equal(output.images[index], expected[index])
        else:
            assert not torch.allclose(output.images[index], expected[index], atol=1e-3)


def test_bias_mixing_is_reproducible_for_a_seed(pipelines) -> None:  # noqa: ANN001
    _, livo = pipelines
    first = livo(["a photo of a doctor"], num_images_per_prompt=12, generator=seeded(6), **CALL)
    again = livo(["a photo of a doctor"], num_images_per_prompt=12, generator=seeded(6), **CALL)
    other = livo(["a photo of a doctor"], num_images_per_prompt=12, generator=seeded(6), value_seed=123, **CALL)
    assert first.values == again.values and torch.equal(first.images, again.images)
    assert set(first.values) == {GENDER, None}
    assert other.values != first.values


def test_a_generator_reused_over_calls_gives_each_call_new_coins(pipelines) -> None:  # noqa: ANN001
    """The coins were seeded from the generator's initial seed, which a reused generator keeps: a
    loop of calls with one generator got new noise but the same coin every time."""
    _, livo = pipelines
    generator = seeded(0)
    looped = [livo(["a photo of a doctor"], generator=generator, **CALL).values[0] for _ in range(12)]
    assert set(looped) == {GENDER, None}
    again = seeded(0)
    assert [livo(["a photo of a doctor"], generator=again, **CALL).values[0] for _ in range(12)] == looped


def test_with_one_generator_per_image_an_image_does_not_depend_on_the_others_of_its_call(pipelines) -> None:  # noqa: ANN001
    """As a diffusers pipeline's noise, an image's bias coins come from its own generator: the coins
    were seeded from all the call's generators, so an image changed with its batch."""
    _, livo = pipelines
    seeds = range(10, 26)
    whole = livo(["a photo of a doctor"] * 16, generator=[seeded(s) for s in seeds], **CALL)
    assert set(whole.values) == {GENDER, None}
    for part in (slice(0, 1), slice(3, 9)):
        alone = livo(["a photo of a doctor"] * len(seeds[part]), generator=[seeded(s) for s in seeds[part]], **CALL)
        assert alone.values == whole.values[part]
        assert torch.allclose(alone.images, whole.images[part], atol=1e-5)
    # One generator per image of a single image: the same coins as the generator given alone.
    assert livo(["a photo of a doctor"], generator=seeded(12), **CALL).values == whole.values[2:3]
    with pytest.raises(ConfigError, match="generator: 2 given for 3 images"):
        livo(["a photo of a doctor"] * 3, generator=[seeded(1), seeded(2)], **CALL)


def test_bias_values_are_applied_to_about_half_the_images() -> None:
    applied = values_per_image(["a photo of a doctor"], select, 400, np.random.default_rng(11))
    share = sum(value is not None for value in applied) / 400
    assert 0.4 <= share <= 0.6
    harm = values_per_image(["a bloody zombie"], select, 50, np.random.default_rng(11))
    assert harm == [BLOOD] * 50


class CountingSelector:
    """A selector with the batched ``choose_many`` form, counting how it is called."""

    def __init__(self) -> None:
        self.single_calls, self.batched_calls = 0, 0

    def __call__(self, prompt: str):  # noqa: ANN204
        self.single_calls += 1
        return select(prompt)

    def choose_many(self, prompts: list[str]) -> list:
        self.batched_calls += 1
        return [select(prompt) for prompt in prompts]


def test_a_batched_selector_is_asked_once_for_all_prompts_with_the_same_values() -> None:
    counting = CountingSelector()
    batched = values_per_image(PROMPTS * 4, counting, 3, np.random.default_rng(5))
    assert (counting.batched_calls, counting.single_calls) == (1, 0)
    assert batched == values_per_image(PROMPTS * 4, select, 3, np.random.default_rng(5))


def test_a_batched_selector_that_drops_prompts_is_an_error() -> None:
    class Short(CountingSelector):
        def choose_many(self, prompts: list[str]) -> list:
            return super().choose_many(prompts)[:-1]

    with pytest.raises(ConfigError, match="choose_many returned 2 values for 3 prompts"):
        values_per_image(PROMPTS, Short(), 1, np.random.default_rng(5))


class SeveralValues(CountingSelector):
    """A multi-value selector: "a bloody doctor" gets no-blood and gender-equality, harm first."""

    def choose_all(self, prompts: list[str]) -> list:
        self.batched_calls += 1
        return [
            [v for v in (BLOOD if "bloody" in p else None, GENDER if "doctor" in p else None) if v] for p in prompts
        ]


def test_a_multi_value_selector_applies_the_first_and_reports_all(pipelines) -> None:  # noqa: ANN001
    _, livo = pipelines
    several = SeveralValues()
    output = livo(["a bloody doctor", "a dog"], num_images_per_prompt=2, generator=seeded(7), selector=several, **CALL)
    assert several.batched_calls == 1 and several.single_calls == 0
    assert output.selected == [[BLOOD, GENDER], []]
    assert output.values == [BLOOD, BLOOD, None, None]
    # The same images as a selector that names only the first value.
    first_only = livo(
        ["a bloody doctor", "a dog"],
        num_images_per_prompt=2,
        generator=seeded(7),
        selector=lambda p: BLOOD if "bloody" in p else None,
        **CALL,
    )
    assert torch.equal(output.images, first_only.images)


def test_save_and_load_give_identical_images(pipelines, tmp_path) -> None:  # noqa: ANN001
    from transformers import CLIPTextModel

    _, livo = pipelines
    livo.save_pretrained(tmp_path / "livo")
    loaded = LiVOPipeline.from_pretrained(tmp_path / "livo", selector=select)
    loaded.base.set_progress_bar_config(disable=True)
    expected = livo(PROMPTS, num_images_per_prompt=2, generator=seeded(7), **CALL)
    output = loaded(PROMPTS, num_images_per_prompt=2, generator=seeded(7), **CALL)
    assert output.values == expected.values and torch.equal(output.images, expected.images)
    folder = tmp_path / "livo" / "value_encoder"
    assert (folder / "model.safetensors").is_file()
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["CLIPTextModel"]
    plain = CLIPTextModel.from_pretrained(tmp_path / "livo", subfolder="value_encoder")
    for name, tensor in livo.value_encoder.state_dict().items():
        assert torch.equal(plain.state_dict()[name], tensor), name


def test_dtypes_are_read_as_diffusers_users_write_them(pipelines, tmp_path) -> None:  # noqa: ANN001
    """torch_dtype="bfloat16" loaded the base in float32 beside a bfloat16 value encoder, dtype= was a
    TypeError and livo.to(torch.float16) failed."""
    _, livo = pipelines
    livo.save_pretrained(tmp_path / "livo")
    for kwargs in ({"torch_dtype": "bfloat16"}, {"dtype": torch.bfloat16}):
        loaded = LiVOPipeline.from_pretrained(tmp_path / "livo", **kwargs)
        assert loaded.base.unet.dtype == loaded.base.text_encoder.dtype == torch.bfloat16
        assert next(loaded.value_encoder.parameters()).dtype == torch.bfloat16
    assert next(loaded.to(torch.float32).value_encoder.parameters()).dtype == torch.float32
    assert loaded.base.unet.dtype == torch.float32
    with pytest.raises(ConfigError, match="torch_dtype: a torch dtype or its name"):
        LiVOPipeline.from_pretrained(tmp_path / "livo", torch_dtype="half-ish")


def test_saving_keeps_the_pipeline_settings_and_refuses_a_folder_with_other_files(pipelines, tmp_path) -> None:  # noqa: ANN001
    """bias_probability and max_values_per_prompt were lost in a round trip (0.0 came back as 0.5),
    and saving into a folder replaced it whole, deleting a README or checkpoints beside it."""
    base, _ = pipelines
    _, encoder = base, pipelines[1].value_encoder
    never = LiVOPipeline(base, encoder, selector=select, bias_probability=0.0, max_values_per_prompt=2)
    never.save_pretrained(tmp_path / "never")
    never.save_pretrained(tmp_path / "never")  # saving again over its own folder is fine
    loaded = LiVOPipeline.from_pretrained(tmp_path / "never", selector=select)
    assert (loaded.bias_probability, loaded.max_values_per_prompt) == (0.0, 2)
    assert LiVOPipeline.from_pretrained(tmp_path / "never", bias_probability=0.25).bias_probability == 0.25
    kept = tmp_path / "kept"
    (kept / "checkpoints").mkdir(parents=True)
    (kept / "README.md").write_text("notes")
    with pytest.raises(InputError, match=r"kept holds README.md, checkpoints, not part of a saved pipeline"):
        never.save_pretrained(kept)
    assert (kept / "README.md").read_text() == "notes" and (kept / "checkpoints").is_dir()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_generation_with_values(pipelines, dtype: torch.dtype) -> None:  # noqa: ANN001
    from diffusers import StableDiffusionPipeline

    _, livo = pipelines
    half_base = StableDiffusionPipeline(**tiny_components(seed=0)).to(dtype=dtype)
    half_base.set_progress_bar_config(disable=True)
    encoder = ValueEncoder.from_text_encoder(livo.value_encoder).to(dtype=dtype)
    half = LiVOPipeline(half_base, encoder, selector=select)
    output = half(PROMPTS, num_images_per_prompt=2, generator=seeded(8), **CALL)
    assert output.images.dtype == dtype and output.images.shape == (6, 3, 16, 16)
    assert torch.isfinite(output.images.float()).all()
    assert output.values[2] == BLOOD


def test_generation_leaves_a_training_value_encoder_trainable(pipelines) -> None:  # noqa: ANN001
    base, _ = pipelines
    encoder = ValueEncoder.from_text_encoder(base.text_encoder).train()
    LiVOPipeline(base, encoder, selector=select)(
        ["a bloody zombie"], num_images_per_prompt=1, generator=seeded(1), **CALL
    )
    assert encoder.training and all(p.requires_grad for p in encoder.parameters())


def test_a_selector_must_answer_with_a_value_choice_or_none(pipelines) -> None:  # noqa: ANN001
    _, livo = pipelines
    with pytest.raises(ConfigError, match=r"selector: returned 'no gore'; a selector returns a ValueChoice"):
        livo(["a cat"], num_images_per_prompt=1, generator=seeded(4), selector=lambda prompt: "no gore", **CALL)
    with pytest.raises(ConfigError, match=r"value 'x': kind: expected 'bias' or 'harm', got 'fairness'"):
        ValueChoice("x", "gender equality", "fairness")  # type: ignore[arg-type]


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_a_batch_of_requests_gives_each_request_its_own_call_s_images(pipelines, eta) -> None:  # noqa: ANN001
    """With eta 1 the sampler adds noise at every step: it came from torch's global generator, so
    the same request twice gave other images."""
    from livo.models import GenerationRequest

    _, livo = pipelines
    call = {**CALL, "eta": eta}
    requests = [
        GenerationRequest("a photo of a doctor", 21, GENDER, 3),
        GenerationRequest("a bloody zombie", 22, BLOOD, 2),
        GenerationRequest("a dog in the park", 23, None, 1, negative_prompt="blurry"),
    ]
    batched = livo.generate_batch(requests, **call)
    torch.manual_seed(12345)  # the global generator's state must not matter
    again = livo.generate_batch(requests, **call)
    for request, output, repeat in zip(requests, batched, again, strict=True):
        assert torch.equal(output.images, repeat.images)
        alone = livo(
            request.prompt,
            num_images_per_prompt=request.num_images,
            generator=seeded(request.seed),
            negative_prompt=request.negative_prompt,
            selector=lambda _, value=request.value: value,
            **call,
        )
        assert output.values == alone.values
        torch.testing.assert_close(output.images, alone.images, atol=1 / 255, rtol=0)


def test_encode_with_no_value_gives_the_base_embeddings(pipelines) -> None:  # noqa: ANN001
    # A caller (e.g. a batching server) may encode a batch where no image got a value.
    from livo.models.conditioning import base_conditioning

    base, livo = pipelines
    embeds, negatives = livo.encode(["a cat", "a dog"], 2, [None] * 4)
    expected = base_conditioning(base.text_encoder, base.tokenizer, ["a cat", "a dog"])
    assert embeds.shape[0] == 4 and negatives.shape[0] == 4
    assert torch.equal(embeds[0], expected[0]) and torch.equal(embeds[3], expected[1])


def test_a_text_encoder_lora_s_scale_is_applied_to_the_prompts_livo_encodes(tiny_base_and_encoder) -> None:  # noqa: ANN001
    """diffusers scales a text encoder's LoRA by ``cross_attention_kwargs={"scale": s}`` when it
    encodes a prompt; LiVO encodes steered prompts itself and must do the same: at scale 0 its images
    are those of the text encoder without the LoRA, and the LoRA is back at full scale afterwards."""
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig, inject_adapter_in_model

    from livo.testing import tiny_components

    _, value_encoder = tiny_base_and_encoder
    plain = StableDiffusionPipeline(**tiny_components(seed=0))
    plain.set_progress_bar_config(disable=True)
    with_lora = StableDiffusionPipeline(**tiny_components(seed=0))
    with_lora.set_progress_bar_config(disable=True)
    inject_adapter_in_model(LoraConfig(r=4, lora_alpha=4, target_modules=["q_proj", "v_proj"]), with_lora.text_encoder)
    with torch.no_grad():
        for name, parameter in with_lora.text_encoder.named_parameters():
            if "lora_B" in name:
                parameter.copy_(0.5 * torch.randn(parameter.shape, generator=seeded(2)))
    without, lora = (LiVOPipeline(p, value_encoder, selector=select) for p in (plain, with_lora))
    call = {"generator": seeded(5), **CALL}
    reference = without(["a bloody zombie"], num_images_per_prompt=2, **call).images
    scaled = lora(
        ["a bloody zombie"],
        num_images_per_prompt=2,
        cross_attention_kwargs={"scale": 0.0},
        **{**call, "generator": seeded(5)},
    )
    assert scaled.values == [BLOOD] * 2
    assert torch.allclose(scaled.images, reference, atol=1e-6)
    full = lora(["a bloody zombie"], num_images_per_prompt=2, **{**call, "generator": seeded(5)}).images
    assert not torch.allclose(full, reference, atol=1e-3)  # the LoRA counts, and is restored


def test_arguments_are_read_as_diffusers_reads_them(pipelines) -> None:  # noqa: ANN001
    """Found calling it as a diffusers user would: the second positional argument is diffusers'
    height; a numpy count is a count; a size given on one side only is no size; bad types are named."""
    base, livo = pipelines
    with pytest.raises(TypeError):
        livo(["a cat"], 2)  # 2 images here, a height of 2 in diffusers
    assert len(livo(["a cat"], num_images_per_prompt=np.int64(2), generator=seeded(1), **CALL).images) == 2
    request = GenerationRequest("a bloody zombie", 0, value=BLOOD)
    call = {key: value for key, value in CALL.items() if key != "width"} | {"height": 24}
    batched = livo.generate_batch([request], **call)[0].images
    single = livo("a bloody zombie", generator=seeded(0), selector=lambda _: BLOOD, **call).images
    assert batched.shape == single.shape == (1, 3, 16, 16)  # diffusers ignores one side given alone
    assert torch.equal(batched, single)
    for call_changes, message in [
        ({"value_seed": 1.5}, "value_seed: a non-negative integer or a numpy Generator, got 1.5"),
        ({"value_seed": -1}, "value_seed: a non-negative integer"),
        ({"negative_prompt": 3}, "negative_prompt: a string or a list of strings, got int"),
        ({"selector": "no blood"}, "selector: 'no blood' is not a selector"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            livo(["a cat"], generator=seeded(1), **call_changes, **CALL)
    with pytest.raises(ConfigError, match="value id: a non-empty string, got None"):
        ValueChoice(None, "no blood", "harm")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="value 'x': text: a string, got NoneType"):
        ValueChoice("x", None, "harm")  # type: ignore[arg-type]


def test_diffusers_attributes_and_switches_reach_the_base(tiny_base_and_encoder) -> None:  # noqa: ANN001
    from diffusers import DDIMScheduler, EulerDiscreteScheduler

    base, value_encoder = tiny_base_and_encoder
    livo = LiVOPipeline(base, value_encoder, selector=select)
    assert livo.unet is base.unet and livo.components["unet"] is base.unet and livo.dtype == base.dtype
    livo.set_progress_bar_config(disable=True)
    livo.enable_attention_slicing(1)
    try:
        # Swapping the scheduler as diffusers' docs do reaches the pipeline that denoises.
        livo.scheduler = EulerDiscreteScheduler.from_config(livo.scheduler.config)
        assert isinstance(base.scheduler, EulerDiscreteScheduler) and livo.scheduler is base.scheduler
    finally:
        base.scheduler = DDIMScheduler.from_config(base.scheduler.config)
        base.disable_attention_slicing()
    assert livo.to("cpu", silence_dtype_warnings=True) is livo
    with pytest.raises(AttributeError, match=r"pipe.base.enable_model_cpu_offload .*leaves the value encoder"):
        livo.enable_model_cpu_offload()
    with pytest.raises(AttributeError, match="no attribute 'no_such_thing'$"):
        livo.no_such_thing  # noqa: B018
