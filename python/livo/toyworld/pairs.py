"""Rendered (aligned, violating) image pairs of the toy world, written as a LiVO pair dataset.

Until dataset construction on Ray produces pairs from a generator and judges, the renderer is the
generator: both images of a pair are drawn from one scene (same subject, glyph size, position,
background, colour jitter) and differ only in what the value principle is about:

* ``colour_equality`` ("balance colour") on a people-prompt without a colour word: the violating
  image has the subject's trained default colour, the aligned one the other colour;
* ``no_blood`` / ``no_zombie`` on a prompt with that harm word: the violating image carries the
  marks, the aligned one is the same scene without them;
* both, as two values ``[no_blood or no_zombie, colour_equality]``, on a harmful people-prompt
  without a colour word ("a bloody nurse"): the aligned image has no marks and the other colour, the
  violating one breaks one value or both (marks with the default colour, marks with the other
  colour, or no marks with the default colour: a third each, drawn per pair).

By default the harmful prompts that ``livo toyworld report`` measures (each subject with one harm
word) are held out: training pairs use the *other* harm word of each subject and the explicit-colour
variants, so the harm rate is measured on prompts the value encoder never saw. Records are written
in a seeded random order through :class:`~livo.data.shards.ShardWriter` with ``PAIR_SCHEMA``.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from livo.errors import ConfigError
from livo.toyworld.grammar import (
    ATTRIBUTES,
    BIAS_PRINCIPLE,
    DEFAULT_ATTRIBUTE,
    HARM_PRINCIPLE,
    HARMS,
    PEOPLE,
    SUBJECTS,
    VALUE_TEXTS,
    PromptSpec,
    report_prompts,
)
from livo.toyworld.render import Scene, draw, sample_scene

MODEL_ID = "livo-toyworld-renderer"
ROW_GROUP_BYTES = 32 * 1024


@dataclass(frozen=True)
class PairsConfig:
    """How many pairs of each kind to render. ``bias_per_subject`` pairs for each people-subject
    (each one steering away from its default colour); ``harm_per_prompt`` pairs for each harmful
    training prompt. ``holdout_report_harm`` keeps the report's harmful prompts out of training;
    ``holdout_subjects`` keeps people-subjects out of the bias pairs (to measure generalisation);
    ``subjects``, when given, is the only subjects any pair shows, bias or harm (a training split by
    subject, whose other subjects are measured as unseen). ``subject_anchors_per_subject`` adds, for
    each people-subject with bias pairs, pairs of the bias value whose two images both have the other
    colour but the violating one shows another of those subjects: they tell the value token to
    change the colour and keep the prompt's subject. ``double_per_prompt`` pairs for each harmful
    people-prompt without a colour word (the same held-out rules as harm pairs; people-subjects as
    for bias pairs) carry both values; ``compose_double_values`` writes them as one value whose text
    joins both (``"no blood, balance colour"``) instead of one value each, the alternative design
    that ``benchmarks/multi_value.py`` compares."""

    output: str
    bias_per_subject: int = 400
    harm_per_prompt: int = 80  # the shipped value encoder's recipe
    holdout_report_harm: bool = True
    holdout_subjects: Sequence[str] = field(default_factory=tuple)
    subjects: Sequence[str] | None = None
    subject_anchors_per_subject: int = 0
    double_per_prompt: int = 0
    compose_double_values: bool = False
    seed: int = 0
    splits: dict[str, float] = field(default_factory=lambda: {"train": 1.0})
    row_group_bytes: int = ROW_GROUP_BYTES

    def validate(self) -> None:
        counts = (self.bias_per_subject, self.harm_per_prompt, self.subject_anchors_per_subject, self.double_per_prompt)
        if min(counts) < 0:
            raise ConfigError(
                "PairsConfig.bias_per_subject, harm_per_prompt, subject_anchors_per_subject and double_per_prompt "
                "must be >= 0"
            )
        if self.bias_per_subject + self.harm_per_prompt + self.double_per_prompt == 0:
            raise ConfigError(
                "PairsConfig: bias_per_subject, harm_per_prompt and double_per_prompt are all 0 (no pairs)"
            )
        if self.subject_anchors_per_subject and not self.bias_per_subject:
            raise ConfigError(
                "PairsConfig.subject_anchors_per_subject: anchors go with bias pairs; bias_per_subject is 0"
            )
        unknown = [s for s in self.holdout_subjects if s not in PEOPLE]
        if unknown:
            raise ConfigError(f"PairsConfig.holdout_subjects: {unknown} are not people-subjects ({', '.join(PEOPLE)})")
        unknown = [s for s in self.subjects or () if s not in SUBJECTS]
        if unknown:
            raise ConfigError(f"PairsConfig.subjects: {unknown} are not toy-world subjects ({', '.join(SUBJECTS)})")
        if self.subjects is not None and not self.subjects:
            raise ConfigError("PairsConfig.subjects: empty (no pairs); give None for every subject")


def harm_training_prompts(holdout_report_harm: bool = True, subjects: Sequence[str] | None = None) -> list[PromptSpec]:
    """Every harmful prompt of the grammar (harm word, subject, optional colour for people) on
    ``subjects`` (default: all), minus the report's harmful prompts when they are held out."""
    held = {spec for spec in report_prompts()["harmful"]} if holdout_report_harm else set()
    specs = []
    for harm in HARMS:
        for subject in SUBJECTS if subjects is None else [s for s in SUBJECTS if s in subjects]:
            colours: tuple[str | None, ...] = (None, *ATTRIBUTES) if subject in PEOPLE else (None,)
            for colour in colours:
                spec = PromptSpec(subject, colour, harm)
                if spec not in held:
                    specs.append(spec)
    return specs


def double_value_training_prompts(people: Sequence[str], holdout_report_harm: bool = True) -> list[PromptSpec]:
    """Every harmful prompt on one of ``people`` without a colour word (it needs a harm value and the
    bias value), minus the report's harmful prompts when they are held out."""
    held = {spec for spec in report_prompts()["harmful"]} if holdout_report_harm else set()
    return [
        spec
        for harm in HARMS
        for subject in PEOPLE
        if subject in people and (spec := PromptSpec(subject, None, harm)) not in held
    ]


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def _pair_images(aligned: Scene, violating: Scene, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Both scenes drawn with the same jitter/mark stream, so only the changed property differs."""
    return draw(aligned, np.random.default_rng(seed)), draw(violating, np.random.default_rng(seed))


def _record(
    spec: PromptSpec,
    aligned_spec: PromptSpec,
    value_ids: str | Sequence[str],
    category: str,
    seed: int,
    aligned: np.ndarray,
    violating: np.ndarray,
    compose: bool = False,
) -> dict[str, Any]:
    prompt = spec.text()
    ids = [value_ids] if isinstance(value_ids, str) else list(value_ids)
    texts = [VALUE_TEXTS[v] for v in ids]
    if compose:
        ids, texts = ["+".join(ids)], [", ".join(texts)]
    key = f"{'+'.join(ids)}|{prompt}|{seed}"
    # The split key: one per prompt text, so a prompt's pairs all land in one split.
    digest = hashlib.blake2b(prompt.encode(), digest_size=8).digest()
    return {
        "record_id": hashlib.blake2b(key.encode(), digest_size=16).hexdigest(),
        "cluster_id": int.from_bytes(digest, "little") >> 1,
        "prompt": prompt,
        "aligned_prompt": aligned_spec.text(),
        "value_id": ids[0],
        "value_text": texts[0],
        "value_ids": ids,
        "value_texts": texts,
        "category": category,
        "seed": seed,
        "aligned_image": _png(aligned),
        "violating_image": _png(violating),
        "model_id": MODEL_ID,
        "created_by": "livo toyworld pairs",
    }


def pair_records(config: PairsConfig) -> Iterator[dict[str, Any]]:
    """The pair records of ``config`` (PAIR_SCHEMA dicts), in a seeded random order."""
    config.validate()
    jobs: list[tuple[str, PromptSpec]] = []
    biased = [
        s for s in PEOPLE if s not in config.holdout_subjects and (config.subjects is None or s in config.subjects)
    ]
    jobs += [("bias", PromptSpec(s)) for s in biased for _ in range(config.bias_per_subject)]
    if config.subject_anchors_per_subject and len(biased) < 2:
        raise ConfigError("PairsConfig.subject_anchors_per_subject: needs at least two people-subjects with bias pairs")
    jobs += [("anchor", PromptSpec(s)) for s in biased for _ in range(config.subject_anchors_per_subject)]
    jobs += [
        ("harm", spec)
        for spec in harm_training_prompts(config.holdout_report_harm, config.subjects)
        for _ in range(config.harm_per_prompt)
    ]
    jobs += [
        ("double", spec)
        for spec in double_value_training_prompts(biased, config.holdout_report_harm)
        for _ in range(config.double_per_prompt)
    ]
    if not jobs:
        raise ConfigError(
            "PairsConfig: these settings select no pairs (bias pairs need people-subjects that are not held "
            "out, harm and double pairs their counts above 0)"
        )
    order = np.random.default_rng(config.seed).permutation(len(jobs))
    for index in order:
        kind, spec = jobs[int(index)]
        seed = config.seed * 10_000_019 + int(index)
        scene = sample_scene(spec, np.random.default_rng(seed))
        if kind == "bias":
            default = DEFAULT_ATTRIBUTE[spec.subject]
            other = next(a for a in ATTRIBUTES if a != default)
            aligned, violating = _pair_images(replace(scene, attribute=other), replace(scene, attribute=default), seed)
            yield _record(spec, replace(spec, attribute=other), BIAS_PRINCIPLE, "bias/colour", seed, aligned, violating)
        elif kind == "anchor":
            other = next(a for a in ATTRIBUTES if a != DEFAULT_ATTRIBUTE[spec.subject])
            others = [s for s in biased if s != spec.subject]
            stranger = others[int(np.random.default_rng(seed).integers(len(others)))]
            aligned, violating = _pair_images(
                replace(scene, attribute=other), replace(scene, attribute=other, subject=stranger), seed
            )
            yield _record(
                spec, replace(spec, attribute=other), BIAS_PRINCIPLE, "bias/subject", seed, aligned, violating
            )
        elif kind == "double":
            assert spec.harm is not None
            default = DEFAULT_ATTRIBUTE[spec.subject]
            other = next(a for a in ATTRIBUTES if a != default)
            broken = int(np.random.default_rng([seed, 1]).integers(3))  # 0: both values, 1: harm, 2: colour
            violating_scene = replace(
                scene, harm=None if broken == 2 else spec.harm, attribute=other if broken == 1 else default
            )
            aligned, violating = _pair_images(replace(scene, harm=None, attribute=other), violating_scene, seed)
            yield _record(
                spec,
                replace(spec, harm=None, attribute=other),
                (HARM_PRINCIPLE[spec.harm], BIAS_PRINCIPLE),
                f"double/{spec.harm}",
                seed,
                aligned,
                violating,
                compose=config.compose_double_values,
            )
        else:
            assert spec.harm is not None
            aligned, violating = _pair_images(replace(scene, harm=None), scene, seed)
            yield _record(
                spec,
                replace(spec, harm=None),
                HARM_PRINCIPLE[spec.harm],
                f"toxicity/{spec.harm}",
                seed,
                aligned,
                violating,
            )


@dataclass(frozen=True)
class PairsWritten:
    """What :func:`write_pairs` did: the dataset's manifest after the run, and the pairs it added
    (a rerun with the same config adds none: records are idempotent per ``record_id``)."""

    manifest: Any
    written: int
    skipped: int


def pair_settings(config: PairsConfig) -> dict[str, Any]:
    """What decides a run's pairs (every setting but the output folder), as JSON: recorded in the
    dataset's manifest, and compared by ``--append``."""
    settings = asdict(config)
    settings.pop("output")
    return json.loads(json.dumps(settings))


def write_pairs(config: PairsConfig, chunk: int = 512) -> PairsWritten:
    """Render the pairs and write them as a shard dataset at ``config.output``."""
    from livo.data.schema import PAIR_SCHEMA, pair_table
    from livo.data.shards import Manifest, ShardConfig, ShardWriter

    # Small row groups: a row group is the unit dealt to ranks and dataloader workers.
    settings = pair_settings(config)
    manifest = Path(config.output) / "manifest.json"
    if manifest.is_file():
        recorded = Manifest.load(config.output).metadata.get("settings")
        if recorded is not None and recorded != settings:
            changed = sorted(k for k in settings.keys() | recorded.keys() if settings.get(k) != recorded.get(k))
            raise ConfigError(
                f"{config.output}: its pairs were made with other settings ({', '.join(changed)} differ); "
                "--append continues a run of the same settings (a pair's seed is its place in the run, so "
                "other settings would repeat pairs under new seeds); write other settings to a new --output"
            )
    shard_config = ShardConfig(
        splits=config.splits,
        row_group_bytes=config.row_group_bytes,
        metadata={"source": "livo toyworld pairs", "seed": config.seed, "settings": settings},
    )
    written = skipped = 0
    with ShardWriter(config.output, shard_config, schema=PAIR_SCHEMA) as writer:
        batch: list[dict[str, Any]] = []
        for record in pair_records(config):
            batch.append(record)
            if len(batch) == chunk:
                stats = writer.write(pair_table(batch))
                written, skipped = written + stats.written, skipped + stats.skipped
                batch = []
        if batch:
            stats = writer.write(pair_table(batch))
            written, skipped = written + stats.written, skipped + stats.skipped
        return PairsWritten(manifest=writer.close(), written=written, skipped=skipped)
