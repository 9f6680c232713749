"""The VLM yes/no judge on a real (tiny, randomly initialised) transformers LLaVA built offline.

No vision-language weights can be downloaded here, so the model's answers carry no knowledge; the
tests check the judge's contract on known toy images: P(yes) is read from the next-token logits
exactly as documented, thresholds split verdicts, bias classes take the best class, and a missing
model fails with a message instead of a download."""

from __future__ import annotations

import numpy as np
import pytest

from livo.errors import ConfigError
from livo.toyworld.grammar import PromptSpec
from livo.toyworld.render import render
from livo.values.registry import builtin_registry_path, load_registry

WORDS = [
    "[PAD]",
    "[UNK]",
    "<image>",
    "yes",
    "no",
    "Yes",
    "No",
    "does",
    "this",
    "image",
    "show",
    "bloody",
    "a",
    "doctor",
    "kite",
    "?",
    "answer",
    "or",
    ".",
    "is",
    "the",
    "person",
    "in",
    "orange",
    "teal",
    ":",
    "Answer",
]


@pytest.fixture(scope="module")
def tiny_vlm(torch_one_thread):
    import torch
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    vocab = {word: index for index, word in enumerate(WORDS)}
    core = Tokenizer(WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    images = CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    processor = LlavaProcessor(
        image_processor=images,
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        image_token="<image>",
        num_additional_image_tokens=1,
    )
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=16,
            patch_size=8,
        ),
        text_config=LlamaConfig(
            vocab_size=len(WORDS),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=64,
        ),
        image_token_index=vocab["<image>"],
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    torch.manual_seed(0)
    return LlavaForConditionalGeneration(config).eval(), processor


@pytest.fixture(scope="module")
def registry():
    return load_registry(builtin_registry_path("toyworld"))


def _images() -> np.ndarray:
    return np.stack([render(PromptSpec("doctor", None, "bloody"), 0)[0], render(PromptSpec("kite"), 1)[0]])


def test_yes_probability_is_the_softmax_of_yes_and_no_logits(tiny_vlm) -> None:
    import torch
    from PIL import Image

    from livo.judges.vlm import VlmJudge

    model, processor = tiny_vlm
    judge = VlmJudge("tiny", model_object=model, processor=processor)
    images = _images()
    question = "Does this image show bloody? Answer yes or no."
    got = judge.yes_probability(images, [question, question])
    for image, probability in zip(images, got):
        inputs = processor(images=[Image.fromarray(image)], text=[f"<image>\n{question}\nAnswer:"], return_tensors="pt")
        with torch.no_grad():
            logits = model(**inputs).logits[0, -1]
        yes = torch.logsumexp(logits[[WORDS.index("yes"), WORDS.index("Yes")]], 0)
        no = torch.logsumexp(logits[[WORDS.index("no"), WORDS.index("No")]], 0)
        assert probability == pytest.approx(float(torch.sigmoid(yes - no)), abs=1e-6)
    assert not np.isclose(got[0], got[1])  # the answer depends on the image


def test_harm_threshold_splits_verdicts_and_scores_are_p_yes(tiny_vlm, registry) -> None:
    from livo.judges.vlm import VlmJudge

    model, processor = tiny_vlm
    images = _images()
    value = registry.value("no_blood")
    scores = [
        v.score
        for v in VlmJudge("tiny", model_object=model, processor=processor).judge(images, ["a doctor"] * 2, value)
    ]
    middle = float(np.mean(scores))
    verdicts = VlmJudge("tiny", model_object=model, processor=processor, threshold=middle).judge(
        images, ["a doctor"] * 2, value
    )
    assert [v.harmful for v in verdicts] == [s >= middle for s in scores]
    assert sorted(v.harmful for v in verdicts) == [False, True]
    assert all(v.subject is not None and 0.0 <= v.score <= 1.0 for v in verdicts)


def test_bias_verdict_takes_the_class_with_the_highest_p_yes(tiny_vlm, registry) -> None:
    from livo.judges.vlm import CLASS_QUESTION, VlmJudge

    model, processor = tiny_vlm
    judge = VlmJudge("tiny", model_object=model, processor=processor)
    images = _images()
    value = registry.value("colour_equality")
    verdicts = judge.judge(images, ["a doctor"] * 2, value)
    table = {name: judge.yes_probability(images, [CLASS_QUESTION.format(cls=name)] * 2) for name in value.classes}
    for k, verdict in enumerate(verdicts):
        best = max(table, key=lambda name: table[name][k])
        assert verdict.attribute == best and verdict.score == pytest.approx(table[best][k])


def test_a_missing_model_folder_fails_without_downloading(tmp_path) -> None:
    from livo.judges.vlm import VlmJudge

    with pytest.raises(ConfigError, match="local files"):
        VlmJudge(tmp_path / "no-such-model")
