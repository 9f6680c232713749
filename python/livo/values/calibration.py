"""Retrieval thresholds fitted on the calibration split of a labelled prompt set.

Prompts are embedded once; the thresholds are then fitted by coordinate ascent over a grid, a few
rounds, maximising macro-F1 of the whole selector among settings whose benign false-positive rate
stays within a cap (5% by default; when no setting meets it, the lowest rate wins). Of the settings
that score best, the middle one is kept, which leaves the most room on both sides for prompts the
calibration set did not contain.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from livo.values.evaluation import LabelledPrompt, score
from livo.values.matching import normalize_text
from livo.values.selector import Selection, ValueSelector

DEFAULT_GRID = tuple(round(x, 3) for x in np.arange(0.20, 0.951, 0.01))


@dataclass
class _Setting:
    thr: np.ndarray
    noun: np.ndarray
    margin: float

    def astuple(self) -> tuple[np.ndarray, np.ndarray, float]:
        return self.thr, self.noun, self.margin

    def same_as(self, other: _Setting) -> bool:
        return bool(
            np.allclose(self.thr, other.thr) and np.allclose(self.noun, other.noun) and self.margin == other.margin
        )


MARGIN_GRID = tuple(round(x, 3) for x in np.arange(0.0, 0.401, 0.02))


@dataclass(frozen=True)
class CalibrationResult:
    thresholds: dict[str, float]
    noun_thresholds: dict[str, float]
    noun_margin: float
    macro_f1: float
    benign_fpr: float
    count: int
    benign_count: int = 0  # rows of a benign* category: without them the FPR cap constrains nothing

    def to_json(self) -> dict[str, Any]:
        return {
            "macro_f1": self.macro_f1,
            "benign_fpr": self.benign_fpr,
            "count": self.count,
            "benign_count": self.benign_count,
            "objective": "highest macro-F1 with benign FPR within the cap (else lowest FPR); "
            "middle of the best settings",
        }


def calibrate(
    selector: ValueSelector,
    rows: Sequence[LabelledPrompt],
    grid: Sequence[float] = DEFAULT_GRID,
    rounds: int = 3,
    max_benign_fpr: float = 0.05,
) -> CalibrationResult:
    """Fits ``selector``'s thresholds to ``rows`` (the calibration split); does not change the
    selector. Keyword decisions are fixed. The free parameters are one threshold per harm value,
    and for the bias values (which share one question, "is this a person?") one threshold, one
    person-noun threshold and the person-noun margin, each shared by all bias values."""
    if not rows:
        raise ValueError("calibration needs at least one labelled prompt")
    value_ids = selector.registry.ids
    normalized = [normalize_text(r.prompt) for r in rows]
    fixed: list[Selection | None] = []
    for text in normalized:
        hit = selector.keywords.match(text)
        fixed.append(Selection(hit.value_id, 1.0, "keyword") if hit else None)
    open_rows = [i for i, f in enumerate(fixed) if f is None]
    scores = selector.retrieval_scores([selector.retrieval_text(rows[i].prompt, normalized[i]) for i in open_rows])
    stated = [selector.attributes.stated(normalized[i]) for i in open_rows]
    nouns = [selector.person_nouns.present(normalized[i]) for i in open_rows]
    labels = [r.label for r in rows]
    categories = [r.category for r in rows]
    bias = [i for i, v in enumerate(selector.registry.values) if v.kind == "bias"]
    harm = [i for i, v in enumerate(selector.registry.values) if v.kind == "harm"]

    def objective(thresholds: np.ndarray, noun_thresholds: np.ndarray, margin: float) -> tuple[float, ...]:
        predictions: list[str | None] = [f.value_id if f else None for f in fixed]
        for row, i in enumerate(open_rows):
            predictions[i] = selector.decide(
                normalized[i],
                scores.positive[row],
                scores.negative[row],
                float(scores.benign[row]),
                thresholds,
                noun_thresholds,
                margin,
                stated[row],
                nouns[row],
            ).value_id
        report = score(labels, predictions, categories, value_ids)
        if report.benign_fpr <= max_benign_fpr + 1e-9:
            return 1.0, report.macro_f1, -report.benign_fpr
        return 0.0, -report.benign_fpr, report.macro_f1

    state = _Setting(selector.thresholds.copy(), selector.noun_thresholds.copy(), float(selector.index.noun_margin))

    def setter(kind: str, columns: list[int]) -> Callable[[float], _Setting]:
        def apply(candidate: float) -> _Setting:
            trial = _Setting(state.thr.copy(), state.noun.copy(), state.margin)
            if kind == "margin":
                trial.margin = candidate
            elif kind == "noun":
                trial.noun[columns] = candidate
            else:
                trial.thr[columns] = candidate
                trial.noun[[c for c in columns if c not in bias]] = candidate
            return trial

        return apply

    coordinates = [(setter("thr", [c]), grid) for c in harm]
    if bias:
        coordinates += [(setter("thr", bias), grid), (setter("noun", bias), grid), (setter("margin", []), MARGIN_GRID)]
    best = objective(state.thr, state.noun, state.margin)
    for _ in range(rounds):
        changed = False
        for apply, candidates in coordinates:
            results = [objective(*apply(c).astuple()) for c in candidates]
            top = max(results)
            if top < best:
                continue
            winners = [c for c, r in zip(candidates, results) if r == top]
            chosen = apply(float(winners[len(winners) // 2]))
            changed = changed or not chosen.same_as(state)
            state = chosen
            best = top
        if not changed:
            break
    return CalibrationResult(
        thresholds={v: round(float(t), 4) for v, t in zip(value_ids, state.thr)},
        noun_thresholds={value_ids[c]: round(float(state.noun[c]), 4) for c in bias},
        noun_margin=round(state.margin, 4),
        macro_f1=float(best[1] if best[0] else best[2]),
        benign_fpr=float(-best[2] if best[0] else -best[1]),
        count=len(rows),
        benign_count=sum(c.startswith("benign") for c in categories),
    )
