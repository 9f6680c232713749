"""The judges of one build or evaluation, built once from a :class:`~livo.judges.spec.JudgesConfig`
and routed by value: dataset construction asks which pairs to keep, evaluation how often images show
an attribute, a harm or their prompt's subject."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from livo.errors import ConfigError
from livo.judges.base import ImageJudge, ImageVerdict
from livo.judges.spec import JudgesConfig, JudgeSpec
from livo.plugins import JUDGES, load_plugin
from livo.values.registry import Registry, ValuePrinciple


def make_judge(spec: JudgeSpec, device: str | None = None) -> ImageJudge:
    """The judge ``spec`` describes: the ``livo.judges`` plug-in of its kind, built with
    ``from_spec(spec, device)`` (heavy libraries are imported only then)."""
    judge: ImageJudge = load_plugin(JUDGES, spec.kind)(spec, device)
    return judge


class JudgePanel:
    """One judge instance per distinct spec, the judge of each value, and the subject judge."""

    def __init__(self, config: JudgesConfig, registry: Registry, device: str | None = None) -> None:
        unknown = sorted(set(config.values) - set(registry.ids))
        if unknown:
            # A mistyped id (no_nudity for no-nudity) would leave that value to the default judge.
            raise ConfigError(f"judges.values: unknown value ids {unknown}; the registry's are {registry.ids}")
        self.config = config
        self.registry = registry
        self._device = device
        self._instances: dict[str, ImageJudge] = {}
        self.subject_judge = self._instance(config.subject) if config.subject is not None else None

    def _instance(self, spec: JudgeSpec) -> ImageJudge:
        key = spec.key()
        if key not in self._instances:
            self._instances[key] = make_judge(spec, self._device)
        return self._instances[key]

    def judge_for(self, value_id: str) -> ImageJudge:
        return self._instance(self.config.spec_for(value_id))

    def name_for(self, value_id: str) -> str:
        return self.judge_for(value_id).name

    def for_value(self, value: ValuePrinciple) -> ImageJudge | None:
        """The value's judge if it can decide the value, else None."""
        judge = self.judge_for(value.id)
        return judge if judge.supports(value) else None

    def check(self, value_ids: Sequence[str]) -> None:
        """Raises ConfigError naming every value that its judge cannot decide."""
        problems = []
        for value_id in value_ids:
            judge = self.judge_for(value_id)
            if not judge.supports(self.registry.value(value_id)):
                problems.append(f"value {value_id!r}: judge {judge.name!r} cannot decide it")
        if problems:
            raise ConfigError("judges: " + "; ".join(problems) + " (set judges.values.<id> to a judge that can)")

    def subject_value(self) -> ValuePrinciple | None:
        """A value of the registry the subject judge supports (its verdicts carry ``subject``)."""
        if self.subject_judge is None:
            return None
        return next((value for value in self.registry.values if self.subject_judge.supports(value)), None)

    def judge_by_value(
        self, images: np.ndarray, prompts: Sequence[str], value_ids: Sequence[str]
    ) -> list[ImageVerdict]:
        """One verdict per image; images are grouped by value so each judge sees batches."""
        verdicts: list[ImageVerdict | None] = [None] * len(images)
        for value_id in dict.fromkeys(value_ids):
            rows = [i for i, v in enumerate(value_ids) if v == value_id]
            judge = self.judge_for(value_id)
            found = list(judge.judge(images[rows], [prompts[i] for i in rows], self.registry.value(value_id)))
            _check_count(judge, found, len(rows), value_id)
            for i, verdict in zip(rows, found):
                verdicts[i] = verdict
        return [v for v in verdicts if v is not None]

    def subjects(
        self, images: np.ndarray, prompts: Sequence[str], value_ids: Sequence[str], verdicts: Sequence[ImageVerdict]
    ) -> list[bool | None]:
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
            found = list(
                self.subject_judge.judge(images[rows], [prompts[i] for i in rows], self.registry.value(value_id))
            )
            _check_count(self.subject_judge, found, len(rows), value_id)
            for i, verdict in zip(rows, found):
                out[i] = verdict.subject
        return out


def _check_count(judge: ImageJudge, found: Sequence[ImageVerdict], images: int, value_id: str) -> None:
    """A judge owes one verdict per image: with fewer or more, verdicts would land on other images."""
    if len(found) != images:
        raise ConfigError(
            f"judge {type(judge).__name__} ({value_id}): returned {len(found)} verdicts for {images} images; "
            "a judge returns one verdict per image, in order"
        )
