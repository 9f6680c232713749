"""The toy-world evaluation hook: bias, harm and benign fidelity of the model being trained.

The value of each prompt comes from :func:`toy_selector`, the toy world's ground truth (harm word →
its harm principle, always applied; people-prompt without a colour word → "balance colour", applied
per image with probability 0.5; anything else → no value). Images are made with
:func:`livo.toyworld.report.generate` and read with the toy-world detectors, so the numbers are the
ones ``livo toyworld report`` computes:

* ``d1_people``: mean D1 of the colour over the neutral people-prompts;
* ``harm_rate``: mean share of images of the report's harmful prompts that show the prompt's mark;
* ``fidelity_people`` / ``fidelity_harmful`` / ``fidelity_benign``: subject fidelity.

For LiVO the pipeline is a :class:`~livo.models.LiVOPipeline` around the live value encoder; for
Diffusion-DPO it is the base pipeline, whose U-Net is the one being trained.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from livo.models.values import ValueChoice
from livo.toyworld.detect import detect
from livo.toyworld.grammar import BIAS_PRINCIPLE, HARM_PRINCIPLE, VALUE_TEXTS, parse_prompt, report_prompts
from livo.toyworld.report import generate, measure_prompt, summarise

BATCH = 256


def toy_selector(prompt: str) -> ValueChoice | None:
    """The toy world's value for a prompt (see the module docstring)."""
    spec = parse_prompt(prompt)
    if spec.harm is not None:
        return ValueChoice(VALUE_TEXTS[HARM_PRINCIPLE[spec.harm]], "harm")
    if spec.is_person and spec.attribute is None:
        return ValueChoice(VALUE_TEXTS[BIAS_PRINCIPLE], "bias")
    return None


def evaluate(pipeline: Any, *, per_prompt: int, steps: int, guidance_scale: float, seed: int,
             benign: bool = True) -> dict[str, Any]:
    """Generate ``per_prompt`` images for each report prompt of the measured categories and return
    the summary numbers (see the module docstring) plus the per-category table."""
    categories = ["neutral_people", "harmful"] + (["explicit_people", "objects"] if benign else [])
    prompts = report_prompts()
    rows = []
    for index, category in enumerate(categories):
        specs = prompts[category]
        images = generate(pipeline, [s.text() for s in specs], per_prompt, steps, guidance_scale,
                          seed + 1_000_000 * index, BATCH)
        rows += [measure_prompt(spec, detect(batch)) for spec, batch in zip(specs, images)]
    summary = summarise(rows)
    metrics: dict[str, Any] = {
        "d1_people": summary["neutral_people"]["d1"],
        "harm_rate": summary["harmful"]["harm_rate"],
        "fidelity_people": summary["neutral_people"]["subject_fidelity"],
        "fidelity_harmful": summary["harmful"]["subject_fidelity"],
        "default_share_people": summary["neutral_people"]["default_share"],
    }
    if benign:
        metrics["fidelity_benign"] = summary["benign"]["subject_fidelity"]
        metrics["attribute_obeyed"] = summary["explicit_people"]["attribute_obeyed"]
        metrics["spurious_harm_benign"] = summary["benign"]["spurious_harm_rate"]
    metrics["per_prompt"] = per_prompt
    metrics["summary"] = summary
    metrics["prompts"] = rows
    return metrics


def flat(metrics: dict[str, Any]) -> dict[str, float]:
    """The scalar numbers of an evaluation (for logs)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float, np.floating))}


def evaluation_pipeline(base: Any, value_encoder: Any | None) -> Any:
    """The pipeline to evaluate: LiVO around ``value_encoder``, or ``base`` itself (DPO)."""
    if value_encoder is None:
        return base
    from livo.models.pipeline import LiVOPipeline

    return LiVOPipeline(base, value_encoder, selector=toy_selector, bias_probability=0.5)
