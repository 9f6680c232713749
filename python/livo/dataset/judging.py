"""The judge stage: which judge decides each value, and whether a pair is kept.

A pair is kept only when the violating image really violates (bias: it shows a readable attribute
class, which the aligned class differs from by construction; harm: the harm is visible), the
aligned image conforms (bias: it shows the class that was asked for; harm: no harm visible) and
the aligned image still shows the prompt's subject (when a subject judge is configured). Every
other pair is dropped with one of :data:`DROP_REASONS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from livo.errors import ConfigError
from livo.judges import ImageJudge, ImageVerdict, make_judge
from livo.values.registry import Registry, ValuePrinciple

DROP_REASONS = (
    "violating_attribute_unreadable",  # bias: the judge reads no class off the violating image
    "violating_not_harmful",  # harm: the original prompt's image shows no harm
    "aligned_wrong_attribute",  # bias: the aligned image does not show the inserted class
    "aligned_still_harmful",  # harm: the rewritten prompt's image still shows the harm
    "aligned_lost_subject",  # the aligned image no longer shows the prompt's subject
)


def decide_pair(value: ValuePrinciple, violating: ImageVerdict, aligned: ImageVerdict,
                target_class: str | None, aligned_subject: bool | None) -> str | None:
    """The drop reason of a pair, or None to keep it."""
    if value.kind == "bias":
        if violating.attribute is None:
            return "violating_attribute_unreadable"
        if aligned.attribute != target_class:
            return "aligned_wrong_attribute"
    else:
        if not violating.harmful:
            return "violating_not_harmful"
        if aligned.harmful:
            return "aligned_still_harmful"
    if aligned_subject is False:
        return "aligned_lost_subject"
    return None


def judge_spec_for(judges: Any, value_id: str) -> Any:
    return judges.values.get(value_id, judges.default)


class JudgePanel:
    """The judges of a build (one instance per distinct spec), routed by value id."""

    def __init__(self, judges: Any, registry: Registry, device: str | None = None) -> None:
        self.config = judges
        self.registry = registry
        self._instances: dict[str, ImageJudge] = {}
        self._device = device
        self.subject_judge = self._instance(judges.subject) if judges.subject is not None else None

    def _instance(self, spec: Any) -> ImageJudge:
        key = spec.key()
        if key not in self._instances:
            options: dict[str, Any] = {}
            if spec.kind == "clip":
                options = {"subject_threshold": spec.subject_threshold, "class_template": spec.class_template,
                           "harm_texts": dict(spec.harm_texts)}
            self._instances[key] = make_judge(spec.kind, model=spec.model, threshold=spec.threshold,
                                              device=self._device if spec.kind == "clip" else None, **options)
        return self._instances[key]

    def judge_for(self, value_id: str) -> ImageJudge:
        return self._instance(judge_spec_for(self.config, value_id))

    def name_for(self, value_id: str) -> str:
        return self.judge_for(value_id).name

    def check(self, value_ids: Sequence[str]) -> None:
        """Raises ConfigError naming every value that its judge cannot decide."""
        problems = []
        for value_id in value_ids:
            judge = self.judge_for(value_id)
            if not judge.supports(self.registry.value(value_id)):
                problems.append(f"value {value_id!r}: judge {judge.name!r} cannot decide it")
        if problems:
            raise ConfigError("judges: " + "; ".join(problems) + " (set judges.values.<id> to a judge that can)")

    def judge_by_value(self, images: np.ndarray, prompts: Sequence[str], value_ids: Sequence[str]) -> list[ImageVerdict]:
        """One verdict per image; images are grouped by value so each judge sees batches."""
        verdicts: list[ImageVerdict | None] = [None] * len(images)
        for value_id in dict.fromkeys(value_ids):
            rows = [i for i, v in enumerate(value_ids) if v == value_id]
            found = self.judge_for(value_id).judge(images[rows], [prompts[i] for i in rows], self.registry.value(value_id))
            for i, verdict in zip(rows, found):
                verdicts[i] = verdict
        return [v for v in verdicts if v is not None]

    def subjects(self, images: np.ndarray, prompts: Sequence[str], value_ids: Sequence[str],
                 verdicts: Sequence[ImageVerdict]) -> list[bool | None]:
        """Whether each image shows its prompt's subject, by the subject judge (None: unchecked).
        When the subject judge is also the value's judge, its verdict is reused."""
        if self.subject_judge is None:
            return [None] * len(images)
        out: list[bool | None] = [None] * len(images)
        pending = []
        for i, (value_id, verdict) in enumerate(zip(value_ids, verdicts)):
            if self.judge_for(value_id) is self.subject_judge:
                out[i] = verdict.subject
            else:
                pending.append(i)
        for value_id in dict.fromkeys(value_ids[i] for i in pending):
            rows = [i for i in pending if value_ids[i] == value_id]
            found = self.subject_judge.judge(images[rows], [prompts[i] for i in rows], self.registry.value(value_id))
            for i, verdict in zip(rows, found):
                out[i] = verdict.subject
        return out
