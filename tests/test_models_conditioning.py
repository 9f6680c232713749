"""Tokenizer, value encoder and conditioning shapes/values on the tiny and SD-1.5-sized configs."""

import pytest
import torch

from livo.errors import ConfigError
from livo.models import (
    ValueEncoder,
    base_conditioning,
    build_word_tokenizer,
    check_vocabulary,
    reference_conditioning,
    unconditional_conditioning,
    value_conditioning,
)
from livo.testing import sd15_configs, sd15_text_encoder_config, tiny_components

pytestmark = pytest.mark.usefixtures("torch_one_thread")


PROMPTS = ["a photo of a doctor", "a bloody zombie in the street"]
VALUES = ["gender equality", "bloody content is considered inappropriate"]


@pytest.fixture(scope="module")
def tiny():  # noqa: ANN201
    components = tiny_components(seed=0)
    return components["text_encoder"], components["tokenizer"]


def test_tokenizer_vocabulary_is_real() -> None:
    tokenizer = build_word_tokenizer(["doctor", "nurse", "cat"], max_length=8)
    ids = [tokenizer(w, add_special_tokens=False).input_ids for w in ("doctor", "nurse", "cat", "Doctor")]
    assert ids[0] != ids[1] != ids[2] and ids[0] == ids[3]
    row = tokenizer("nurse, cat", padding="max_length", max_length=8).input_ids
    assert (
        row[0] == tokenizer.bos_token_id
        and row[4] == tokenizer.eos_token_id
        and row[5:] == [tokenizer.pad_token_id] * 3
    )


def test_a_tokenizer_mapping_every_word_to_one_id_is_refused() -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"<s>": 0, "</s>": 1, "<pad>": 3, "<unk>": 4}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    empty = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    with pytest.raises(ConfigError, match="not one known id"):
        check_vocabulary(empty, ["doctor", "nurse"])


def test_text_encoder_pools_the_real_end_token(tiny) -> None:  # noqa: ANN001
    """With the legacy ``eos_token_id`` 2, CLIP pools at the highest token id instead of the end
    token: here a word's id (13) is higher than the end token's (1)."""
    text_encoder, tokenizer = tiny
    assert text_encoder.config.eos_token_id == tokenizer.eos_token_id != 2
    ids = tokenizer(["a doctor"], padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt")
    ids = ids.input_ids
    end, highest = int((ids[0] == tokenizer.eos_token_id).nonzero()[0]), int(ids[0].argmax())
    assert end != highest
    with torch.no_grad():
        output = text_encoder(ids)
    assert torch.equal(output.pooler_output[0], output.last_hidden_state[0, end])


def test_conditioning_shapes_and_layout_on_the_tiny_model(tiny) -> None:  # noqa: ANN001
    text_encoder, tokenizer = tiny
    length, width = tokenizer.model_max_length, text_encoder.config.hidden_size
    value_encoder = ValueEncoder.from_text_encoder(text_encoder)
    with torch.no_grad():
        cond = value_conditioning(value_encoder, text_encoder, tokenizer, VALUES, PROMPTS)
        base = base_conditioning(text_encoder, tokenizer, PROMPTS)
        uncond = unconditional_conditioning(text_encoder, tokenizer, 2)
    assert cond.c_ref.shape == (2, length - 1, width)
    assert cond.c_theta.shape == (2, length, width) == base.shape == uncond.shape
    assert torch.equal(cond.c_theta[:, 0], cond.e_v)
    assert torch.equal(cond.c_theta[:, 1:], cond.c_ref)
    # The text encoder is causal: c_ref is the base embedding without its last padding token.
    torch.testing.assert_close(cond.c_ref, base[:, : length - 1], rtol=0, atol=1e-6)
    assert torch.equal(uncond[0], uncond[1])


def test_value_token_is_the_pooled_end_state_of_value_comma_prompt(tiny) -> None:  # noqa: ANN001
    text_encoder, tokenizer = tiny
    value_encoder = ValueEncoder.from_text_encoder(text_encoder)
    texts = [f"{v}, {p}" for v, p in zip(VALUES, PROMPTS, strict=True)]
    tokens = tokenizer(
        texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    )
    with torch.no_grad():
        e_v = value_encoder.encode_values(tokenizer, VALUES, PROMPTS)
        hidden = text_encoder(tokens.input_ids).last_hidden_state
    end = (tokens.input_ids == tokenizer.eos_token_id).int().argmax(dim=1)
    assert torch.equal(e_v, hidden[torch.arange(2), end])
    assert not torch.equal(e_v[0], e_v[1])


def test_value_encoder_is_an_independent_copy_of_the_text_encoder(tiny) -> None:  # noqa: ANN001
    text_encoder, _ = tiny
    value_encoder = ValueEncoder.from_text_encoder(text_encoder)
    assert value_encoder.config.to_dict() == text_encoder.config.to_dict() | {
        "architectures": value_encoder.config.architectures
    }
    with torch.no_grad():
        value_encoder.final_layer_norm.weight.add_(1.0)
    assert not torch.equal(value_encoder.final_layer_norm.weight, text_encoder.final_layer_norm.weight)


def test_conditioning_lengths_on_sd15_sized_text_encoder() -> None:
    from transformers import CLIPTextModel

    tokenizer = build_word_tokenizer(max_length=77)
    config = sd15_text_encoder_config(tokenizer)
    assert (config.hidden_size, config.num_hidden_layers, config.max_position_embeddings) == (768, 12, 77)
    assert sd15_configs()["unet"]["cross_attention_dim"] == config.hidden_size
    with torch.device("meta"):
        text_encoder = CLIPTextModel(config)
        value_encoder = ValueEncoder(config)
    assert sum(p.numel() for p in value_encoder.parameters()) == pytest.approx(123e6, rel=0.01)
    cond = value_conditioning(value_encoder, text_encoder, tokenizer, VALUES, PROMPTS)
    uncond = unconditional_conditioning(text_encoder, tokenizer, 2)
    assert cond.c_ref.shape == (2, 76, 768)
    assert cond.c_theta.shape == (2, 77, 768) == uncond.shape
    assert reference_conditioning(text_encoder, tokenizer, PROMPTS).shape == (2, 76, 768)
