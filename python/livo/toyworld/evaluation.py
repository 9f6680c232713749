"""What the toy world plugs into evaluation and training, by name (``livo.plugins``):

* :func:`prompt_set`, the ``livo.prompt_sets`` plug-in ``toyworld``: the report prompts of an
  evaluation (``prompts: {set: toyworld}``), as rows of the prompt-file schema;
* :func:`evaluate_training`, the ``livo.train_evaluations`` plug-in ``toyworld``: bias, harm and
  benign fidelity of a model being trained (``eval: {hook: toyworld}`` in a training config).

The values of each prompt in training evaluations come from :func:`toy_values`, the toy world's
ground truth (harm word → its harm principle, always applied; people-prompt without a colour word →
"balance colour", applied per image with probability 0.5; both for "a bloody nurse", one token each;
anything else → no value). Images are made
with :func:`livo.toyworld.measure.generate` and read with the toy-world detectors, so the numbers are
the metrics ``livo toyworld report`` computes, on the same images for the neutral people-prompts
(the report's first category); the other categories start from other seeds than the report's (its
order of categories differs), so a base model's harm and fidelity figures differ by their noise:

* ``d1_people``: mean D1 of the colour over the neutral people-prompts;
* ``harm_rate``: mean share of images of the report's harmful prompts that show the prompt's mark;
* ``fidelity_people`` / ``fidelity_harmful`` / ``fidelity_benign``: subject fidelity;
  ``fidelity_benign`` here is over every prompt without a harm word, people-prompts that get the
  colour value included (the report's ``benign`` group), not over the prompts that get no value as
  ``livo eval``'s ``fidelity (benign)`` is;
* ``d1_double_value``: mean D1 of the colour over the harmful people-prompts, which need a harm
  value and the colour value at once.

For LiVO the pipeline is a :class:`~livo.models.LiVOPipeline` around the live value encoder; for
Diffusion-DPO it is the base pipeline, whose U-Net is the one being trained.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from livo.errors import InputError
from livo.toyworld.detect import detect
from livo.toyworld.grammar import (
    ATTRIBUTES,
    BIAS_PRINCIPLE,
    DEFAULT_ATTRIBUTE,
    HARM_PRINCIPLE,
    HARMS,
    OBJECTS,
    PEOPLE,
    SUBJECTS,
    VALUE_TEXTS,
    PromptSpec,
    parse_prompt,
    report_prompts,
)
from livo.toyworld.measure import generate, measure_prompt, summarise
from livo.value_types import ValueChoice

BATCH = 256


def toy_values(prompt: str) -> list[ValueChoice]:
    """Every value a toy-world prompt needs, harm first: its harm word's principle, and "balance
    colour" for a person without a colour word ("a bloody nurse" needs both)."""
    spec = parse_prompt(prompt)
    values = []
    if spec.harm is not None:
        values.append(ValueChoice(HARM_PRINCIPLE[spec.harm], VALUE_TEXTS[HARM_PRINCIPLE[spec.harm]], "harm"))
    if spec.is_person and spec.attribute is None:
        values.append(ValueChoice(BIAS_PRINCIPLE, VALUE_TEXTS[BIAS_PRINCIPLE], "bias"))
    return values


def toy_selector(prompt: str) -> ValueChoice | None:
    """The toy world's value for a prompt (see the module docstring): the first of
    :func:`toy_values`."""
    values = toy_values(prompt)
    return values[0] if values else None


class ToyValueSelector:
    """The toy world's ground truth as a multi-value selector (:func:`toy_values` per prompt), for
    a pipeline that applies several values per prompt."""

    def __call__(self, prompt: str) -> ValueChoice | None:
        return toy_selector(prompt)

    def choose_all(self, prompts: Sequence[str]) -> list[list[ValueChoice]]:
        return [toy_values(prompt) for prompt in prompts]


def measure_pipeline(
    pipeline: Any, *, per_prompt: int, steps: int, guidance_scale: float, seed: int, benign: bool = True
) -> dict[str, Any]:
    """Generate ``per_prompt`` images for each report prompt of the measured categories and return
    the summary numbers (see the module docstring) plus the per-category table."""
    categories = ["neutral_people", "harmful"] + (["explicit_people", "objects"] if benign else [])
    prompts = report_prompts()
    rows = []
    for index, category in enumerate(categories):
        specs = prompts[category]
        images = generate(
            pipeline, [s.text() for s in specs], per_prompt, steps, guidance_scale, seed + 1_000_000 * index, BATCH
        )
        rows += [measure_prompt(spec, detect(batch)) for spec, batch in zip(specs, images)]
    summary = summarise(rows)
    metrics: dict[str, Any] = {
        "d1_people": summary["neutral_people"]["d1"],
        "harm_rate": summary["harmful"]["harm_rate"],
        "fidelity_people": summary["neutral_people"]["subject_fidelity"],
        "fidelity_harmful": summary["harmful"]["subject_fidelity"],
        "default_share_people": summary["neutral_people"]["default_share"],
        "d1_double_value": summary["double_value"]["d1"],
    }
    if benign:
        metrics["fidelity_benign"] = summary["benign"]["subject_fidelity"]
        metrics["attribute_obeyed"] = summary["explicit_people"]["attribute_obeyed"]
        metrics["spurious_harm_benign"] = summary["benign"]["spurious_harm_rate"]
    metrics["per_prompt"] = per_prompt
    metrics["summary"] = summary
    metrics["prompts"] = rows
    return metrics


def prompt_set() -> list[dict[str, str | None]]:
    """The report prompts with their category (``bias``, ``explicit``, ``harm``, ``benign``), value
    id and, for explicit prompts, the colour asked for (see :func:`prompt_rows`)."""
    return prompt_rows(report_prompts())


def subject_prompt_rows(subjects: Sequence[str]) -> list[dict[str, str | None]]:
    """The evaluation's rows for ``subjects`` alone, e.g. subjects held out from training: each
    person without a colour word (bias) and with each colour word (explicit), every harm word on
    every subject (harm), and each object (benign)."""
    unknown = [s for s in subjects if s not in SUBJECTS]
    if unknown:
        raise InputError(f"subjects {unknown}: not in the toy-world grammar ({', '.join(SUBJECTS)})")
    return prompt_rows(
        subject_prompt_specs([s for s in PEOPLE if s in subjects], [s for s in OBJECTS if s in subjects])
    )


def subject_prompt_specs(people: Sequence[str], objects: Sequence[str]) -> dict[str, list[PromptSpec]]:
    """The prompts of some subjects by report category: each person without a colour word
    (``neutral_people``) and with each one (``explicit_people``), every harm word on every subject
    (``harmful``), and each object (``objects``)."""
    return {
        "neutral_people": [PromptSpec(p) for p in people],
        "explicit_people": [PromptSpec(p, a) for p in people for a in ATTRIBUTES],
        "harmful": [PromptSpec(s, None, h) for s in [*people, *objects] for h in HARMS],
        "objects": [PromptSpec(o) for o in objects],
    }


def prompt_rows(specs: dict[str, list[PromptSpec]]) -> list[dict[str, str | None]]:
    """Rows of the prompt-file schema for report categories. Explicit prompts come first with the
    colour against each person's default ("a teal doctor"), the harder request, then the default
    colour: a per-category limit keeps the harder half. Each harmful prompt on a person without a
    colour word comes again at the end as a ``double`` prompt (its harm value + "balance colour"),
    so the other prompts keep their places, and so their seeds."""
    rows: list[dict[str, str | None]] = []
    explicit: list[dict[str, str | None]] = []
    double: list[dict[str, str | None]] = []
    for category, members in specs.items():
        for spec in members:
            if category == "neutral_people":
                rows.append(_row(spec.text(), "bias", BIAS_PRINCIPLE))
            elif category == "explicit_people":
                explicit.append(_row(spec.text(), "explicit", BIAS_PRINCIPLE, spec.attribute))
            elif category == "harmful":
                assert spec.harm is not None
                rows.append(_row(spec.text(), "harm", HARM_PRINCIPLE[spec.harm]))
                if spec.is_person and spec.attribute is None:
                    double.append(_row(spec.text(), "double", f"{HARM_PRINCIPLE[spec.harm]}+{BIAS_PRINCIPLE}"))
            else:
                rows.append(_row(spec.text(), "benign"))
    first = [r for r in explicit if r["attribute"] != DEFAULT_ATTRIBUTE[parse_prompt(str(r["prompt"])).subject]]
    second = [r for r in explicit if r not in first]
    index = next((i for i, r in enumerate(rows) if r["category"] == "harm"), len(rows))
    return rows[:index] + first + second + rows[index:] + double


def _row(prompt: str, category: str, value: str | None = None, attribute: str | None = None) -> dict[str, str | None]:
    return {"prompt": prompt, "category": category, "value": value, "attribute": attribute}


def evaluate_training(
    base: Any,
    value_encoder: Any | None,
    *,
    per_prompt: int,
    steps: int,
    guidance_scale: float,
    seed: int,
    benign: bool = True,
) -> dict[str, Any]:
    """The training hook: :func:`measure_pipeline` on LiVO around ``value_encoder`` (with the toy world's
    ground-truth selector, every value a prompt needs, one token each), or on ``base`` itself when it
    is None (Diffusion-DPO trains its U-Net)."""
    pipeline = base
    if value_encoder is not None:
        from livo.models.pipeline import LiVOPipeline

        pipeline = LiVOPipeline(
            base, value_encoder, selector=ToyValueSelector(), bias_probability=0.5, max_values_per_prompt=2
        )
    return measure_pipeline(
        pipeline, per_prompt=per_prompt, steps=steps, guidance_scale=guidance_scale, seed=seed, benign=benign
    )
