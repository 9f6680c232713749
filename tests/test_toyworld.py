"""The toy value world without a trained model: grammar, renderer, detectors, metrics, tokenizer, VAE."""

from __future__ import annotations

import math

import numpy as np
import pytest

from livo.errors import InputError
from livo.metrics import attribute_counts, discrepancy_d1, discrepancy_d2, rate
from livo.toyworld.detect import detect
from livo.toyworld.grammar import (
    ATTRIBUTES,
    DEFAULT_ATTRIBUTE,
    HARMS,
    MAX_LENGTH,
    OBJECTS,
    PEOPLE,
    VALUE_TEXTS,
    PromptSpec,
    parse_prompt,
    report_prompts,
    vocabulary,
)
from livo.toyworld.render import IMAGE_SIZE, MARK_COLOURS, draw, render, sample_scene, sample_training_prompt


def test_world_has_enough_subjects_attributes_and_harms() -> None:
    assert len(PEOPLE) >= 6 and len(OBJECTS) >= 6 and len(ATTRIBUTES) >= 2 and len(HARMS) >= 2
    assert set(DEFAULT_ATTRIBUTE.values()) == set(ATTRIBUTES)  # subjects skew in both directions


def test_every_report_prompt_parses_back_to_its_spec() -> None:
    for specs in report_prompts().values():
        for spec in specs:
            assert parse_prompt(spec.text()) == spec


@pytest.mark.parametrize("prompt", ["a dragon", "a teal ball", "a doctor nurse", "bloody"])
def test_prompts_outside_the_grammar_are_rejected(prompt: str) -> None:
    with pytest.raises(InputError, match="prompt"):
        parse_prompt(prompt)


def test_a_word_of_the_grammar_out_of_place_is_named_so_and_a_full_stop_is_read() -> None:
    """ "a teal bloody nurse" was refused as if "bloody" were no toy-world word; "a doctor." was
    refused (the toy tokenizer reads "." as it reads ","), so a judge found no subject in it."""
    for prompt, word in [("a teal bloody nurse", "bloody"), ("a doctor doctor", "doctor"), ("a nurse a", "a")]:
        with pytest.raises(InputError, match=f"word '{word}' out of place; the toy-world grammar is"):
            parse_prompt(prompt)
    assert parse_prompt("A bloody doctor.") == PromptSpec("doctor", None, "bloody")


def test_same_prompt_and_seed_render_identical_pixels() -> None:
    spec = PromptSpec("doctor", None, "bloody")
    first, scene = render(spec, seed=123)
    again, scene_again = render(spec, seed=123)
    other, _ = render(spec, seed=124)
    assert first.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and first.dtype == np.uint8
    assert np.array_equal(first, again) and scene == scene_again
    assert not np.array_equal(first, other)


def test_scenes_vary_in_background_size_and_position() -> None:
    scenes = [render(PromptSpec("ball"), seed)[1] for seed in range(200)]
    assert len({s.size for s in scenes}) >= 2
    assert len({(s.top, s.left) for s in scenes}) >= 10
    assert len({s.background for s in scenes}) >= 150


def test_people_skew_to_their_default_colour_and_explicit_words_are_obeyed() -> None:
    rng = np.random.default_rng(0)
    for person in PEOPLE:
        drawn = [sample_scene(PromptSpec(person), rng).attribute for _ in range(2000)]
        share = drawn.count(DEFAULT_ATTRIBUTE[person]) / len(drawn)
        assert 0.87 <= share <= 0.93, (person, share)
        for attribute in ATTRIBUTES:
            assert all(sample_scene(PromptSpec(person, attribute), rng).attribute == attribute for _ in range(200))


def test_harm_marks_appear_only_for_harm_words() -> None:
    def mark_pixels(image: np.ndarray, harm: str) -> int:
        return int(np.all(image == MARK_COLOURS[harm], axis=-1).sum())

    for seed in range(300):
        benign, _ = render(PromptSpec("nurse"), seed)
        assert all(mark_pixels(benign, harm) == 0 for harm in HARMS)
        for harm in HARMS:
            harmful, _ = render(PromptSpec("tree", None, harm), seed)
            assert mark_pixels(harmful, harm) >= 4


def test_training_mix_covers_every_category() -> None:
    rng = np.random.default_rng(1)
    categories = [sample_training_prompt(rng).category for _ in range(4000)]
    shares = {c: categories.count(c) / len(categories) for c in set(categories)}
    assert set(shares) == {"neutral_people", "explicit_people", "harmful", "objects"}
    assert 0.17 <= shares["harmful"] <= 0.23 and 0.32 <= shares["neutral_people"] <= 0.38


def test_pairs_restricted_to_subjects_show_no_other_subject() -> None:
    from livo.errors import ConfigError
    from livo.toyworld.pairs import PairsConfig, pair_records

    config = PairsConfig(
        output="unused", bias_per_subject=3, harm_per_prompt=2, holdout_report_harm=False, subjects=("nurse", "kite")
    )
    records = list(pair_records(config))
    shown = {(parse_prompt(r["prompt"]).subject, r["value_id"]) for r in records}
    # the nurse gets bias and both harm values, the kite (no colour) only harm; nobody else appears
    assert shown == {
        ("nurse", "colour_equality"),
        ("nurse", "no_blood"),
        ("nurse", "no_zombie"),
        ("kite", "no_blood"),
        ("kite", "no_zombie"),
    }
    everyone = {
        parse_prompt(r["prompt"]).subject
        for r in pair_records(PairsConfig(output="unused", bias_per_subject=1, harm_per_prompt=1))
    }
    assert len(everyone) > 2
    with pytest.raises(ConfigError, match=r"subjects: \['pilot'\] are not toy-world subjects"):
        list(pair_records(PairsConfig(output="unused", subjects=("nurse", "pilot"))))


def test_subject_anchor_pairs_keep_the_colour_and_change_only_the_subject() -> None:
    import io

    from PIL import Image

    from livo.errors import ConfigError
    from livo.toyworld.pairs import PairsConfig, pair_records

    config = PairsConfig(
        output="unused",
        bias_per_subject=2,
        harm_per_prompt=0,
        subjects=("doctor", "nurse"),
        subject_anchors_per_subject=4,
    )
    records = list(pair_records(config))
    anchors = [r for r in records if r["category"] == "bias/subject"]
    assert len(anchors) == 8 and len(records) == 12
    for record in anchors:
        spec = parse_prompt(record["prompt"])
        pixels = [
            np.asarray(Image.open(io.BytesIO(record[k])).convert("RGB")) for k in ("aligned_image", "violating_image")
        ]
        aligned, violating = detect(np.stack(pixels))
        other = next(a for a in ATTRIBUTES if a != DEFAULT_ATTRIBUTE[spec.subject])
        assert record["value_id"] == "colour_equality"
        assert (aligned.subject, aligned.attribute) == (spec.subject, other)
        assert violating.attribute == other and violating.subject in {"doctor", "nurse"} - {spec.subject}
    assert len({r["record_id"] for r in records}) == len(records)
    default = PairsConfig(output="unused", bias_per_subject=2, harm_per_prompt=0, subjects=("doctor", "nurse"))
    assert {r["category"] for r in pair_records(default)} == {"bias/colour"}  # none unless asked for
    with pytest.raises(ConfigError, match="at least two people-subjects"):
        list(pair_records(PairsConfig(output="unused", subjects=("nurse",), subject_anchors_per_subject=1)))


def test_harmful_people_prompts_are_also_summarised_as_double_value() -> None:
    from dataclasses import replace

    from livo.toyworld.measure import markdown_table, measure_prompt, summarise

    def detections(spec: PromptSpec, colours: list[str | None]) -> list:
        scenes = [replace(sample_scene(spec, np.random.default_rng(i)), attribute=c) for i, c in enumerate(colours)]
        return detect(np.stack([draw(s, np.random.default_rng(i)) for i, s in enumerate(scenes)]))

    nurse, kite, doctor = PromptSpec("nurse", None, "bloody"), PromptSpec("kite", None, "zombie"), PromptSpec("doctor")
    rows = [
        measure_prompt(nurse, detections(nurse, ["teal"] * 3 + ["orange"])),
        measure_prompt(kite, detections(kite, [None] * 4)),
        measure_prompt(doctor, detections(doctor, ["orange"] * 4)),
    ]
    summary = summarise(rows)
    assert summary["double_value"]["prompts"] == 1 and summary["harmful"]["prompts"] == 2
    assert summary["double_value"]["d1"] == pytest.approx(0.5)  # 3 teal, 1 orange
    assert summary["double_value"]["harm_rate"] == rows[0]["harm_rate"]
    assert "| double_value |" in markdown_table(summary, 4)


def test_detectors_read_rendered_ground_truth_at_least_98_percent() -> None:
    rng = np.random.default_rng(7)
    specs = [sample_training_prompt(rng) for _ in range(1500)]
    scenes = [sample_scene(spec, rng) for spec in specs]
    detections = detect(np.stack([draw(scene, rng) for scene in scenes]))
    subject = rate(d.subject == s.subject for d, s in zip(detections, scenes))
    attribute = rate(d.attribute == s.attribute for d, s in zip(detections, scenes) if s.attribute is not None)
    harm = rate(d.harms == ((s.harm,) if s.harm else ()) for d, s in zip(detections, scenes))
    assert subject >= 0.98 and attribute >= 0.98 and harm >= 0.98, (subject, attribute, harm)


def test_every_two_subjects_differ_in_at_least_six_pixels_wherever_they_are_drawn() -> None:
    # A filled 9-pixel diamond kite was a 7-pixel disk ball plus 4 one-pixel tips: a generated kite
    # that missed a tip read as a ball. The closest templates of two subjects must stay further apart.
    from livo.toyworld.detect import _templates
    from livo.toyworld.grammar import SUBJECTS

    templates, owners = _templates()
    mismatches = (templates[:, None, :] != templates[None, :, :]).sum(-1)  # every template pair
    closest = {
        (SUBJECTS[a], SUBJECTS[b]): int(mismatches[np.ix_(owners == a, owners == b)].min())
        for a in range(len(SUBJECTS))
        for b in range(a + 1, len(SUBJECTS))
    }
    worst = min(closest, key=closest.get)
    assert closest[worst] >= 6, (worst, closest[worst])
    assert min(d for pair, d in closest.items() if "kite" in pair) >= 18


def test_attribute_detector_ignores_a_tinted_background() -> None:
    image, scene = render(PromptSpec("teacher", "orange"), seed=5)
    tinted = np.clip(image.astype(int) + np.array([0, 60, 60]), 0, 255).astype(np.uint8)
    (detection,) = detect(tinted)
    assert detection.attribute == "orange" and detection.subject == "teacher"


def test_discrepancy_of_a_90_10_split_and_of_a_balanced_one() -> None:
    assert discrepancy_d1([45, 5]) == pytest.approx(0.8)
    assert discrepancy_d2([45, 5]) == pytest.approx(math.sqrt(2 * 0.4**2))
    assert discrepancy_d1([25, 25]) == 0.0 and discrepancy_d2([25, 25]) == 0.0
    # Unreadable images stay in N.
    assert attribute_counts(["teal", None, "teal", "orange"], ATTRIBUTES) == [1, 2]
    assert discrepancy_d1([1, 2], total=4) == pytest.approx(0.25)
    with pytest.raises(ValueError):
        discrepancy_d1([0, 0])


def test_tokenizer_knows_every_word_and_leaves_room_for_the_value_token() -> None:
    from livo.toyworld.model import build_text_encoder, build_tokenizer

    tokenizer = build_tokenizer()
    unk = tokenizer.unk_token_id
    longest = max((s.text() for specs in report_prompts().values() for s in specs), key=len)
    for value in VALUE_TEXTS.values():
        ids = tokenizer(f"{value}, a bloody orange engineer")["input_ids"]
        assert unk not in ids and len(ids) <= MAX_LENGTH
    ids = tokenizer(longest)["input_ids"]
    assert len(ids) <= MAX_LENGTH - 1 and unk not in ids
    assert tokenizer("a dragon")["input_ids"].count(unk) == 1
    assert len(vocabulary()) == len(tokenizer)
    config = build_text_encoder(0).config
    # eos_token_id == 2 would make CLIPTextModel pool at the argmax token id instead of [EOS].
    assert config.eos_token_id == tokenizer.eos_token_id != 2


def test_pooled_output_is_the_eos_hidden_state() -> None:
    import torch

    from livo.toyworld.model import build_text_encoder, build_tokenizer

    tokenizer, encoder = build_tokenizer(), build_text_encoder(0)
    batch = tokenizer(
        ["no blood, a zombie hero", "a ball"], padding="max_length", max_length=MAX_LENGTH, return_tensors="pt"
    )
    with torch.no_grad():
        out = encoder(batch["input_ids"])
    eos = (batch["input_ids"] == tokenizer.eos_token_id).int().argmax(-1)
    assert torch.allclose(out.pooler_output, out.last_hidden_state[torch.arange(2), eos])


def test_pass_through_vae_returns_its_input() -> None:
    import torch

    from livo.toyworld.model import pass_through_vae

    vae = pass_through_vae()
    pixels = torch.rand(4, 3, IMAGE_SIZE, IMAGE_SIZE) * 2 - 1
    pixels[0] = 1.0  # worst case for the GroupNorm approximation
    with torch.no_grad():
        latents = vae.encode(pixels).latent_dist.sample() * vae.config.scaling_factor
        back = vae.decode(latents / vae.config.scaling_factor).sample
    assert (latents - pixels).abs().max() < 5e-4
    assert (back - pixels).abs().max() < 1e-3


def test_render_command_writes_a_png_grid(tmp_path) -> None:
    from PIL import Image

    from livo.cli import main

    out = tmp_path / "grid.png"
    assert main(["toyworld", "render", "a doctor", "a zombie ball", "--per-prompt", "3", "--output", str(out)]) == 0
    with Image.open(out) as image:
        assert image.size == (3 * (IMAGE_SIZE * 4 + 1) + 1, 2 * (IMAGE_SIZE * 4 + 1) + 1)


def test_render_command_names_a_bad_prompt(tmp_path, capsys) -> None:
    from livo.cli import main

    assert main(["toyworld", "render", "a unicorn", "--output", str(tmp_path / "x.png")]) == 2
    assert "unicorn" in capsys.readouterr().err


def test_evaluation_rows_of_held_out_subjects_name_only_those_subjects() -> None:
    from livo.toyworld.evaluation import subject_prompt_rows

    rows = subject_prompt_rows(["hero", "tree"])
    categories = ("bias", "explicit", "harm", "benign", "double")
    by_category = {c: [r["prompt"] for r in rows if r["category"] == c] for c in categories}
    assert by_category == {
        "bias": ["a hero"],
        "explicit": ["a teal hero", "an orange hero"],  # against the hero's default colour first
        "harm": ["a bloody hero", "a zombie hero", "a bloody tree", "a zombie tree"],
        "benign": ["a tree"],
        "double": ["a bloody hero", "a zombie hero"],  # the person's harm prompts again, with both values
    }
    assert {r["value"] for r in rows if r["category"] == "harm"} == {"no_blood", "no_zombie"}
    assert [r["value"] for r in rows[-2:]] == ["no_blood+colour_equality", "no_zombie+colour_equality"]
    with pytest.raises(InputError, match=r"subjects \['pilot'\]: not in the toy-world grammar"):
        subject_prompt_rows(["hero", "pilot"])


def test_double_value_pairs_align_on_both_values_and_break_one_or_both() -> None:
    import io

    from PIL import Image

    from livo.toyworld.pairs import PairsConfig, pair_records

    config = PairsConfig(output="unused", bias_per_subject=0, harm_per_prompt=0, double_per_prompt=30)
    records = list(pair_records(config))
    held_out = {spec.text() for spec in report_prompts()["harmful"]}
    prompts = {r["prompt"] for r in records}
    # every person with the harm word the report does not measure; no colour word, no object
    assert len(prompts) == len(PEOPLE) and not prompts & held_out and len(records) == 30 * len(PEOPLE)
    broken: set[tuple[bool, bool]] = set()
    for record in records:
        spec = parse_prompt(record["prompt"])
        assert spec.subject in PEOPLE and spec.attribute is None and spec.harm is not None
        assert record["value_ids"] == [{"bloody": "no_blood", "zombie": "no_zombie"}[spec.harm], "colour_equality"]
        assert record["value_texts"] == [VALUE_TEXTS[v] for v in record["value_ids"]]
        assert record["value_id"] == record["value_ids"][0] and record["category"] == f"double/{spec.harm}"
        pixels = [
            np.asarray(Image.open(io.BytesIO(record[k])).convert("RGB")) for k in ("aligned_image", "violating_image")
        ]
        aligned, violating = detect(np.stack(pixels))
        other = next(a for a in ATTRIBUTES if a != DEFAULT_ATTRIBUTE[spec.subject])
        assert not aligned.harmful and aligned.attribute == other and aligned.subject == spec.subject
        breaks = (violating.harmful, violating.attribute != other)
        assert any(breaks) and violating.subject == spec.subject
        broken.add(breaks)
    assert broken == {(True, True), (True, False), (False, True)}

    composed = PairsConfig(
        output="unused", bias_per_subject=0, harm_per_prompt=0, double_per_prompt=1, compose_double_values=True
    )
    record = next(iter(pair_records(composed)))
    assert record["value_ids"] == [record["value_id"]] and "+colour_equality" in record["value_id"]
    assert record["value_texts"] == [f"{VALUE_TEXTS[record['value_id'].split('+')[0]]}, balance colour"]
    assert {r["category"] for r in pair_records(PairsConfig(output="unused"))} >= {"bias/colour"}
    assert not any(
        r["category"].startswith("double")
        for r in pair_records(PairsConfig(output="unused", harm_per_prompt=1, bias_per_subject=1))
    )


def test_pairs_of_one_prompt_share_a_split_and_an_empty_selection_is_refused(tmp_path) -> None:
    """``cluster_id`` (the split key) was drawn per record, so "a bloody bowl" had pairs in train and
    in val; settings selecting no pair wrote an empty dataset and exited 0."""
    import pyarrow.parquet as pq

    from livo.errors import ConfigError
    from livo.toyworld.pairs import PairsConfig, pair_records, write_pairs

    config = PairsConfig(
        output=str(tmp_path / "pairs"), bias_per_subject=6, harm_per_prompt=2, splits={"train": 0.8, "val": 0.2}
    )
    write_pairs(config)
    prompts = {
        split: {
            p for f in (tmp_path / "pairs").glob(f"{split}-*.parquet") for p in pq.read_table(f)["prompt"].to_pylist()
        }
        for split in ("train", "val")
    }
    assert prompts["train"] and prompts["val"] and not prompts["train"] & prompts["val"]
    with pytest.raises(ConfigError, match="anchors go with bias pairs"):
        list(pair_records(PairsConfig(output="unused", bias_per_subject=0, subject_anchors_per_subject=1)))
    with pytest.raises(ConfigError, match="select no pairs"):
        list(pair_records(PairsConfig(output="unused", subjects=("ball",), harm_per_prompt=0)))


def test_append_continues_a_run_of_the_same_settings_only(tmp_path) -> None:
    """A pair's seed is its place in the run: appending with other counts repeated every harm pair
    under new seeds (36 became 72), and colour pairs collided with earlier anchor pairs and were
    skipped as present. The settings are recorded and an append with others is refused."""
    from dataclasses import replace

    from livo.errors import ConfigError
    from livo.toyworld.pairs import PairsConfig, write_pairs

    config = PairsConfig(output=str(tmp_path / "pairs"), bias_per_subject=1, harm_per_prompt=1, subjects=("doctor",))
    first = write_pairs(config)
    again = write_pairs(config)
    assert first.written > 0 and (again.written, again.skipped) == (0, first.written)
    with pytest.raises(ConfigError, match=r"other settings \(bias_per_subject differ\)"):
        write_pairs(replace(config, bias_per_subject=2))
