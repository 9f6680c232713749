"""The toy world's detectors as a judge: exact pixel rules that read colour, harm marks and the
glyph's subject (see ``livo.toyworld.detect``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from livo.errors import ConfigError
from livo.judges.base import ImageVerdict, as_batch, check_lengths
from livo.toyworld.grammar import ATTRIBUTES, HARMS, parse_prompt
from livo.values.registry import ValuePrinciple


class ToyWorldJudge:
    """Decides the toy registry's values: the colour attribute and the ``bloody``/``zombie`` marks.

    Scores are 1.0 or 0.0: the detectors are rules, not classifiers. A prompt outside the toy
    grammar gets ``subject=False`` (the image cannot show a subject the world does not have)."""

    name = "toyworld"

    @classmethod
    def from_spec(cls, spec: Any, device: str | None = None) -> ToyWorldJudge:
        """The ``livo.judges`` plug-in ``toyworld``: exact rules, no model, no device."""
        if spec.model is not None or spec.threshold is not None or spec.subject_threshold is not None:
            raise ConfigError(
                "toyworld judge: takes no 'model', 'threshold' or 'subject_threshold' (its detectors are exact rules)"
            )
        return cls()

    def supports(self, value: ValuePrinciple) -> bool:
        if value.kind == "bias":
            return bool(value.classes) and set(value.classes or {}) <= set(ATTRIBUTES)
        return bool(value.keywords) and set(value.keywords) <= set(HARMS)

    def judge(self, images: np.ndarray, prompts: Sequence[str], value: ValuePrinciple) -> list[ImageVerdict]:
        from livo.toyworld.detect import detect

        batch = as_batch(images)
        check_lengths(batch, prompts)
        verdicts = []
        for detection, prompt in zip(detect(batch), prompts):
            subject = _subject(prompt) == detection.subject
            if value.kind == "bias":
                shown = detection.attribute if detection.attribute in (value.classes or {}) else None
                verdicts.append(ImageVerdict(attribute=shown, score=float(shown is not None), subject=subject))
            else:
                harmful = any(mark in detection.harms for mark in value.keywords)
                verdicts.append(ImageVerdict(harmful=harmful, score=float(harmful), subject=subject))
        return verdicts


def _subject(prompt: str) -> str | None:
    try:
        return parse_prompt(prompt).subject
    except ValueError:
        return None
