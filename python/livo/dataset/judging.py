"""The judge stage's decision: whether a pair is kept (the judges themselves: ``livo.judges.JudgePanel``).

A pair is kept only when the violating image really violates (bias: it shows a readable attribute
class, which the aligned class differs from by construction; harm: the harm is visible), the
aligned image conforms (bias: it shows the class that was asked for; harm: no harm visible) and
the aligned image still shows the prompt's subject (when a subject judge is configured). Every
other pair is dropped with one of :data:`DROP_REASONS`.
"""

from __future__ import annotations

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
