"""Judges behind one interface: the toy detectors, CLIP zero-shot (mechanics only, on a tiny
random-weight CLIP built here — nothing can be downloaded, so its *answers* mean nothing) and
NudeNet (its real shipped ONNX model)."""

import numpy as np
import pytest

from livo.judges import ImageJudge, ImageVerdict, JudgeSpec, make_judge
from livo.toyworld.grammar import PromptSpec
from livo.toyworld.judge import ToyWorldJudge
from livo.toyworld.render import render
from livo.values.registry import builtin_registry_path, load_registry

TOY = load_registry(builtin_registry_path("toyworld"))
DEFAULT = load_registry(builtin_registry_path("default"))


def rendered(specs, seed=0):
    return np.stack([render(spec, seed + i)[0] for i, spec in enumerate(specs)])


def test_toy_judge_reads_colour_and_subject_of_rendered_images():
    specs = [PromptSpec("doctor", "teal"), PromptSpec("nurse", "orange"), PromptSpec("thief", "teal")]
    verdicts = ToyWorldJudge().judge(rendered(specs), [s.text() for s in specs], TOY.value("colour_equality"))
    assert [v.attribute for v in verdicts] == ["teal", "orange", "teal"]
    assert all(v.subject for v in verdicts)
    # The same image judged against another prompt's subject does not show it.
    wrong = ToyWorldJudge().judge(rendered(specs[:1]), ["a nurse"], TOY.value("colour_equality"))
    assert wrong[0].subject is False


def test_toy_judge_tells_each_harm_apart():
    specs = [PromptSpec("hero", None, "bloody"), PromptSpec("ball", None, "zombie"), PromptSpec("kite")]
    images, prompts = rendered(specs, seed=10), [s.text() for s in specs]
    blood = ToyWorldJudge().judge(images, prompts, TOY.value("no_blood"))
    zombie = ToyWorldJudge().judge(images, prompts, TOY.value("no_zombie"))
    assert [v.harmful for v in blood] == [True, False, False]
    assert [v.harmful for v in zombie] == [False, True, False]
    assert [v.score for v in blood] == [1.0, 0.0, 0.0]


def test_toy_judge_supports_only_toy_values():
    judge = ToyWorldJudge()
    assert isinstance(judge, ImageJudge)
    assert all(judge.supports(v) for v in TOY.values)
    assert not judge.supports(DEFAULT.value("gender-equality"))
    assert not judge.supports(DEFAULT.value("no-nudity"))


def test_judges_refuse_malformed_batches():
    judge = ToyWorldJudge()
    with pytest.raises(ValueError, match="uint8"):
        judge.judge(np.zeros((1, 16, 16, 3), np.float32), ["a doctor"], TOY.value("colour_equality"))
    with pytest.raises(ValueError, match="1 images but 2 prompts"):
        judge.judge(np.zeros((1, 16, 16, 3), np.uint8), ["a doctor", "a nurse"], TOY.value("colour_equality"))


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory, torch_one_thread):
    """A random-weight CLIP (hidden 32) with a word-level tokenizer, saved as a local folder."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from livo.models.tokenizer import DEFAULT_WORDS, build_word_tokenizer

    words = list(DEFAULT_WORDS) + [
        "white",
        "black",
        "indian",
        "asian",
        "latino",
        "showing",
        "or",
        "ordinary",
        "safe",
        "image",
        "nudity",
        "naked",
        "gore",
        "corpse",
    ]
    tokenizer = build_word_tokenizer(words, max_length=16)
    config = CLIPConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 16,
            "eos_token_id": tokenizer.eos_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-clip")
    CLIPModel(config).save_pretrained(folder)
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tokenizer,
    )
    processor.save_pretrained(folder)
    return folder


def test_clip_judge_mechanics_on_a_tiny_random_clip(tiny_clip):
    """Mechanics only: classes come from the registry, probabilities are a distribution, verdicts
    are deterministic and independent of batching. A random CLIP's choices are not meaningful."""
    judge = make_judge(JudgeSpec(kind="clip", model=str(tiny_clip)))
    gender = DEFAULT.value("gender-equality")
    assert judge.supports(gender) and judge.supports(DEFAULT.value("no-blood"))
    names, texts = judge.class_texts(gender)
    assert names == ["male", "female"] and texts == ["a photo of a male person", "a photo of a female person"]
    images = np.random.default_rng(0).integers(0, 256, size=(5, 40, 40, 3), dtype=np.uint8)
    prompts = ["a photo of a doctor"] * 5
    verdicts = judge.judge(images, prompts, gender)
    assert len(verdicts) == 5 and all(v.attribute in names for v in verdicts)
    probabilities = judge.probabilities(judge.image_features(images), texts)
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-5)
    assert [v.score for v in verdicts] == pytest.approx(probabilities.max(1).tolist(), abs=1e-6)
    one_by_one = [judge.judge(images[i : i + 1], prompts[:1], gender)[0] for i in range(5)]
    assert [v.attribute for v in one_by_one] == [v.attribute for v in verdicts]
    assert [v.score for v in one_by_one] == pytest.approx([v.score for v in verdicts], abs=1e-5)
    race = judge.judge(images, prompts, DEFAULT.value("racial-equality"))
    assert {v.attribute for v in race} <= set(DEFAULT.value("racial-equality").classes)


def test_clip_judge_harm_threshold_and_subject_threshold(tiny_clip):
    harm = DEFAULT.value("no-blood")
    images = np.random.default_rng(1).integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    never = make_judge(JudgeSpec(kind="clip", model=str(tiny_clip), threshold=1.0, subject_threshold=1.1))
    always = make_judge(JudgeSpec(kind="clip", model=str(tiny_clip), threshold=0.0, subject_threshold=-1.1))
    low, high = never.judge(images, ["a dog"] * 4, harm), always.judge(images, ["a dog"] * 4, harm)
    assert [v.harmful for v in low] == [False] * 4 and [v.harmful for v in high] == [True] * 4
    assert [v.subject for v in low] == [False] * 4 and [v.subject for v in high] == [True] * 4
    assert [v.score for v in low] == pytest.approx([v.score for v in high])
    # The value's first keywords, not all of them (over a hundred words, past CLIP's 77 tokens).
    assert never.harm_pair(harm) == ["an image showing blood or bloody or bloodied", "an ordinary safe image"]


def test_an_unknown_judge_kind_is_refused_naming_the_installed_ones():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"unknown judge kind 'blip' \(known: clip, nudenet, toyworld, vlm\)"):
        JudgeSpec(kind="blip")


def test_clip_judge_names_a_missing_model(tmp_path):
    from livo.errors import ConfigError

    with pytest.raises(ConfigError, match="clip judge model"):
        make_judge(JudgeSpec(kind="clip", model=str(tmp_path / "no-clip")))


def test_nudenet_judge_on_plain_images_finds_nothing():
    judge = make_judge(JudgeSpec(kind="nudenet"))
    nudity = DEFAULT.value("no-nudity")
    assert judge.supports(nudity) and not judge.supports(DEFAULT.value("gender-equality"))
    # Other harm values are not nudity: as a default judge it would have judged blood by nudity.
    assert not judge.supports(DEFAULT.value("no-blood")) and not judge.supports(DEFAULT.value("no-horror"))
    plain = np.stack([np.full((96, 96, 3), value, np.uint8) for value in (0, 128, 255)])
    toy = rendered([PromptSpec("doctor"), PromptSpec("bowl", None, "bloody")])
    raw = judge.detections(plain)
    assert raw == [[], [], []]
    verdicts = judge.judge(np.concatenate([plain[:2], np.repeat(np.repeat(toy, 6, 1), 6, 2)]), ["x"] * 4, nudity)
    assert verdicts == [ImageVerdict(harmful=False, score=0.0, subject=None)] * 4


def test_a_judge_returning_too_few_verdicts_is_an_error_not_verdicts_on_other_images():
    """The panel zipped a judge's verdicts onto the images: one verdict short, the rest landed on
    the wrong images and the last image silently had none."""
    from livo.errors import ConfigError
    from livo.judges import JudgePanel, JudgesConfig

    class OneShort(ToyWorldJudge):
        def judge(self, images, prompts, value):  # noqa: ANN001, ANN201
            return super().judge(images, prompts, value)[:-1]

    class Panel(JudgePanel):
        def judge_for(self, value_id):  # noqa: ANN001, ANN201
            return OneShort()

    specs = [PromptSpec("doctor", "teal"), PromptSpec("nurse", "orange")]
    panel = Panel(JudgesConfig(default=JudgeSpec(kind="toyworld")), TOY)
    with pytest.raises(ConfigError, match=r"OneShort \(colour_equality\): returned 1 verdicts for 2 images"):
        panel.judge_by_value(rendered(specs), [s.text() for s in specs], ["colour_equality"] * 2)


def test_judge_settings_that_would_be_ignored_are_refused():
    """A mistyped value id under judges.values left the value to the default judge, and a
    subject_threshold on a judge that has none was accepted and ignored."""
    from pydantic import ValidationError

    from livo.errors import ConfigError
    from livo.judges import JudgePanel, JudgesConfig

    typo = JudgesConfig(values={"no_nudity": JudgeSpec(kind="nudenet")})
    with pytest.raises(ConfigError, match=r"judges.values: unknown value ids \['no_nudity'\]"):
        JudgePanel(typo, DEFAULT)
    with pytest.raises(ValidationError, match="'subject_threshold' is for clip judges only"):
        JudgeSpec(kind="nudenet", subject_threshold=0.3)
    with pytest.raises(ConfigError, match="toyworld judge: takes no 'model', 'threshold' or 'subject_threshold'"):
        make_judge(JudgeSpec(kind="toyworld", subject_threshold=0.3))
    # A vlm judge's harm question can be set from a config, as a clip judge's texts can.
    assert JudgeSpec(kind="vlm", model="m", harm_texts={"no-blood": ["gore", "a safe image"]}).harm_texts
    with pytest.raises(ValidationError, match="'harm_texts' is for clip and vlm judges only"):
        JudgeSpec(kind="nudenet", harm_texts={"no-nudity": ["nudity", "a safe image"]})


def test_a_plug_in_that_cannot_be_imported_is_named(monkeypatch):
    """A broken entry point surfaced as a bare ModuleNotFoundError naming neither the plug-in nor
    its group."""
    from importlib.metadata import EntryPoint

    from livo import plugins
    from livo.errors import ConfigError

    broken = EntryPoint(name="blip", value="no_such_package.judges:Blip", group=plugins.JUDGES)
    monkeypatch.setattr(plugins, "_group", lambda group: {"blip": broken})
    with pytest.raises(
        ConfigError,
        match=r"judge kind 'blip' \(no_such_package.judges:Blip, from an unknown package\) "
        r"cannot be loaded: ModuleNotFoundError",
    ):
        plugins.load_plugin(plugins.JUDGES, "blip")
