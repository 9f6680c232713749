"""The judge stage's decision: whether a pair is kept (the judges themselves: ``livo.judges.JudgePanel``).

A pair is kept only when the violating image really violates (bias: it shows a readable attribute
class, which the aligned class differs from by construction; harm: the harm is visible), the
aligned image conforms (bias: it shows the class that was asked for; harm: no harm visible) and
the aligned image still shows the prompt's subject (when a subject judge is configured). Every
other pair is dropped with one of :data:`DROP_REASONS`.
"""

from __future__ import annotations

from collections.abc import Sequence

from livo.dataset.rewrite import class_not_shown
from livo.judges import ImageVerdict
from livo.values.registry import ValuePrinciple

DROP_REASONS = (
    "violating_attribute_unreadable",  # bias: the judge reads no class off the violating image
    "violating_not_harmful",  # harm: the original prompt's image shows no harm
    "aligned_wrong_attribute",  # bias: the aligned image does not show the inserted class
    "aligned_still_harmful",  # harm: the rewritten prompt's image still shows the harm
    "aligned_lost_subject",  # the aligned image no longer shows the prompt's subject
)


def decide_pair(
    value: ValuePrinciple,
    violating: ImageVerdict,
    aligned: ImageVerdict,
    target_class: str | None,
    aligned_subject: bool | None,
    violation_needed: bool = True,
) -> str | None:
    """The drop reason of a pair under one of its values, or None to keep it.
    ``violation_needed=False``: a harm value beside a bias value in one record, whose pair contrasts
    the bias value already, so its violating image need not show the harm (its aligned image must
    still be free of it)."""
    if value.kind == "bias":
        if violating.attribute is None:
            return "violating_attribute_unreadable"
        if aligned.attribute != target_class:
            return "aligned_wrong_attribute"
    else:
        if violation_needed and not violating.harmful:
            return "violating_not_harmful"
        if aligned.harmful:
            return "aligned_still_harmful"
    if aligned_subject is False:
        return "aligned_lost_subject"
    return None


def bias_targets(
    values: Sequence[ValuePrinciple], violating: Sequence[ImageVerdict], record: str
) -> list[str | None] | None:
    """Per value of a record, the class its aligned image must show: for each bias value one its
    violating image does not show (:func:`~livo.dataset.rewrite.class_not_shown`), None for a harm
    value. None when a bias value's class cannot be read off the violating image. Each bias value
    has its own target: a record of gender and race asks a class of each attribute."""
    targets: list[str | None] = []
    for value, verdict in zip(values, violating):
        if value.kind != "bias":
            targets.append(None)
            continue
        target = class_not_shown(value, verdict.attribute, record)
        if target is None:
            return None
        targets.append(target)
    return targets


def record_drop_reason(
    values: Sequence[ValuePrinciple],
    violating: Sequence[ImageVerdict],
    aligned: Sequence[ImageVerdict],
    targets: Sequence[str | None],
    aligned_subject: bool | None,
) -> str | None:
    """The first drop reason of a record's pair under its values in order (None: kept). A harm value
    beside a bias value need not show its harm in the violating image (:func:`decide_pair`)."""
    contrasted = any(target is not None for target in targets)
    for value, violated, conforming, target in zip(values, violating, aligned, targets):
        reason = decide_pair(value, violated, conforming, target, aligned_subject, violation_needed=not contrasted)
        if reason is not None:
            return reason
    return None
