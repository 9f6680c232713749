"""Several values on one prompt: one value token each, coins per bias value, the pipeline's limit.

With one value everything is what it was (same tokens, same coins, same images); with two, each
token is the one that value gets alone and the prompt gives up one more of its last tokens."""

import numpy as np
import pytest
import torch

from livo.errors import ConfigError
from livo.models import GenerationRequest, LiVOPipeline, ValueChoice, value_conditioning
from livo.models.conditioning import max_value_tokens, reference_conditioning
from livo.models.values import apply_coins, apply_value_coins

GENDER = ValueChoice("gender-equality", "gender equality", "bias")
SKIN = ValueChoice("skin-tone-equality", "skin tone equality", "bias")
BLOOD = ValueChoice("no-blood", "bloody content is considered inappropriate", "harm")
CALL = {"num_inference_steps": 3, "height": 16, "width": 16, "output_type": "pt"}

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def parts(tiny_base_and_encoder):  # noqa: ANN001, ANN201
    base, encoder = tiny_base_and_encoder
    return base, encoder.eval()


class BloodAndGender:
    """A multi-value selector: "a bloody doctor" gets no-blood and gender-equality, harm first."""

    def __call__(self, prompt: str) -> ValueChoice | None:
        found = self.choose_all([prompt])[0]
        return found[0] if found else None

    def choose_all(self, prompts: list[str]) -> list[list[ValueChoice]]:
        return [
            [v for v in (BLOOD if "bloody" in p else None, GENDER if "doctor" in p else None) if v] for p in prompts
        ]


def test_one_value_in_a_list_is_bit_identical_to_the_single_value_form(parts) -> None:  # noqa: ANN001
    base, encoder = parts
    prompts, values = ["a photo of a doctor", "a bloody zombie"], [GENDER.text, BLOOD.text]
    with torch.no_grad():
        single = value_conditioning(encoder, base.text_encoder, base.tokenizer, values, prompts)
        listed = value_conditioning(encoder, base.text_encoder, base.tokenizer, [[v] for v in values], prompts)
    assert torch.equal(listed.c_theta, single.c_theta) and torch.equal(listed.c_ref, single.c_ref)
    assert listed.e_v.shape == (2, 1, single.e_v.shape[1]) and torch.equal(listed.e_v[:, 0], single.e_v)


def test_two_values_get_their_own_tokens_and_the_prompt_keeps_the_length(parts) -> None:  # noqa: ANN001
    base, encoder = parts
    tokenizer, length = base.tokenizer, base.tokenizer.model_max_length
    prompt = ["a bloody doctor"]
    with torch.no_grad():
        both = value_conditioning(encoder, base.text_encoder, tokenizer, [[BLOOD.text, GENDER.text]], prompt)
        blood = value_conditioning(encoder, base.text_encoder, tokenizer, [BLOOD.text], prompt)
        gender = value_conditioning(encoder, base.text_encoder, tokenizer, [GENDER.text], prompt)
    assert both.c_theta.shape == blood.c_theta.shape == (1, length, blood.e_v.shape[1])
    # Each token is the one its value gets alone, in the order given.
    torch.testing.assert_close(both.c_theta[0, 0], blood.e_v[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(both.c_theta[0, 1], gender.e_v[0], rtol=0, atol=1e-6)
    # The causal text encoder: the shorter c_ref is the longer one's prefix for a short prompt.
    assert both.c_ref.shape[1] == length - 2
    torch.testing.assert_close(both.c_ref[0], blood.c_ref[0, : length - 2], rtol=0, atol=1e-6)
    assert not torch.allclose(both.c_theta, blood.c_theta)


def test_value_counts_the_conditioning_cannot_hold_are_refused(parts) -> None:  # noqa: ANN001
    base, encoder = parts
    limit = max_value_tokens(base.tokenizer)
    assert limit == base.tokenizer.model_max_length - 2
    with pytest.raises(ConfigError, match=rf"value tokens: {limit + 1} per prompt; .* allows 1 to {limit}"):
        reference_conditioning(base.text_encoder, base.tokenizer, ["a doctor"], limit + 1)
    with pytest.raises(ConfigError, match=r"the same number of values, got \[1, 2\]"):
        value_conditioning(
            encoder, base.text_encoder, base.tokenizer, [[GENDER.text], [GENDER.text, BLOOD.text]], ["a", "b"]
        )
    with pytest.raises(ConfigError, match=rf"max_values_per_prompt: {limit + 1}; .* allows 1 to {limit}"):
        LiVOPipeline(base, encoder, max_values_per_prompt=limit + 1)


def test_coins_per_bias_value_and_one_value_draws_what_it_always_drew() -> None:
    choices = [GENDER, BLOOD, None, GENDER]
    # One value per prompt: a bias value's images take the stream's draws in order, applied below
    # the probability; a harm value is on every image and, like no value, draws nothing.
    stream, drawn = np.random.default_rng(5), []
    for choice in choices:
        for _ in range(16):
            drawn.append(choice if choice is None or choice.kind == "harm" or stream.random() < 0.5 else None)
    assert apply_coins(choices, 16, np.random.default_rng(5), 0.5) == drawn
    assert 8 < sum(value is GENDER for value in drawn) < 24  # both outcomes occur
    new = apply_value_coins([[c] if c else [] for c in choices], 16, np.random.default_rng(5), 0.5)
    assert [values[0] if values else None for values in new] == drawn
    applied = apply_value_coins([[BLOOD, GENDER, SKIN]], 400, np.random.default_rng(1), 0.5)
    assert all(values[0] == BLOOD for values in applied)  # harm on every image, first as listed
    gender = np.array([GENDER in values for values in applied])
    skin = np.array([SKIN in values for values in applied])
    assert 0.4 < gender.mean() < 0.6 and 0.4 < skin.mean() < 0.6
    assert 0.15 < (gender & skin).mean() < 0.35  # independent coins, not one coin for both
    assert all(values.index(GENDER) < values.index(SKIN) for values in applied if GENDER in values and SKIN in values)
    again = apply_value_coins([[BLOOD, GENDER, SKIN]], 400, np.random.default_rng(1), 0.5)
    assert again == applied
    # One generator drawn over several calls gives a prompt's images the coins of one call.
    stream = np.random.default_rng(1)
    parts = [apply_value_coins([[BLOOD, GENDER, SKIN]], n, stream, 0.5) for n in (150, 1, 249)]
    assert [values for part in parts for values in part] == applied


def test_a_pipeline_limited_to_one_value_applies_the_first_as_before(parts) -> None:  # noqa: ANN001
    base, encoder = parts
    one = LiVOPipeline(base, encoder, selector=BloodAndGender())
    output = one(["a bloody doctor", "a dog"], num_images_per_prompt=4, generator=seeded(7), **CALL)
    assert output.applied == [(BLOOD,)] * 4 + [()] * 4 and output.values == [BLOOD] * 4 + [None] * 4
    assert output.selected == [[BLOOD, GENDER], []]


def test_two_values_per_prompt_apply_harm_always_and_the_bias_value_by_coin(parts) -> None:  # noqa: ANN001
    base, encoder = parts
    one = LiVOPipeline(base, encoder, selector=BloodAndGender())
    two = LiVOPipeline(base, encoder, selector=BloodAndGender(), max_values_per_prompt=2)
    prompts = ["a bloody doctor", "a dog", "a photo of a doctor"]
    output = two(prompts, num_images_per_prompt=8, generator=seeded(11), **CALL)
    expected = one(prompts, num_images_per_prompt=8, generator=seeded(11), **CALL)
    first = output.applied[:8]
    assert all(values[0] == BLOOD for values in first)
    assert {values for values in first} == {(BLOOD,), (BLOOD, GENDER)}
    assert output.applied[8:16] == [()] * 8
    for index, values in enumerate(output.applied[:16]):
        # harm alone or no value: the one-value pipeline's image on the same seed; both values: not
        close = torch.allclose(output.images[index], expected.images[index], atol=1e-5)
        assert close == (len(values) < 2), (index, values)


def test_a_request_with_two_values_matches_a_call_and_bad_lists_are_refused(parts) -> None:  # noqa: ANN001
    base, encoder = parts
    two = LiVOPipeline(base, encoder, max_values_per_prompt=2)
    request = GenerationRequest("a bloody doctor", 31, num_images=4, values=(BLOOD, GENDER))
    [batched] = two.generate_batch([request, GenerationRequest("a dog", 32)], **CALL)[:1]
    alone = two(request.prompt, num_images_per_prompt=4, generator=seeded(31), selector=BloodAndGender(), **CALL)
    assert batched.applied == alone.applied
    torch.testing.assert_close(batched.images, alone.images, atol=1 / 255, rtol=0)
    with pytest.raises(ConfigError, match=r"values for 'a bloody doctor': gender-equality given more than once"):
        two.generate_batch([GenerationRequest("a bloody doctor", 1, values=(GENDER, GENDER))], **CALL)
    one = LiVOPipeline(base, encoder)
    with pytest.raises(ConfigError, match=r"2 given \(no-blood, gender-equality\); .* at most 1 per prompt"):
        one.generate_batch([request], **CALL)
    with pytest.raises(ConfigError, match="give value or values, not both"):
        one.generate_batch([GenerationRequest("a doctor", 1, value=GENDER, values=(GENDER,))], **CALL)
