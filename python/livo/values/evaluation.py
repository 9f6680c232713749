"""Measuring value selection on a labelled prompt set, against the reference's keyword rules.

The labelled set (``data/labelled_prompts.jsonl``) has columns ``prompt``, ``label`` (value id or
null), ``category`` (``benign*`` categories count towards the benign false-positive rate) and
``split`` (``calibration`` or ``test``). Thresholds are calibrated on one split and reported on the
other.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from livo.errors import InputError
from livo.values.matching import ExplicitAttributes, normalize_text
from livo.values.registry import Registry
from livo.values.selector import Selection, Stage, ValueDecision

SPLITS = ("calibration", "test")


@dataclass(frozen=True)
class LabelledPrompt:
    prompt: str
    label: str | None
    category: str
    split: str


def default_labelled_path() -> Path:
    return Path(str(resources.files("livo.values") / "data" / "labelled_prompts.jsonl"))


def load_labelled(path: str | os.PathLike[str] | None = None, split: str | None = None) -> list[LabelledPrompt]:
    """Rows of a labelled prompt file (any format ``livo.data.io`` reads), optionally one split."""
    from livo.data.io import check_json_prompts, read_table

    path = Path(path) if path is not None else default_labelled_path()
    table = read_table(path)
    missing = [c for c in ("prompt", "label") if c not in table.column_names]
    if missing:
        raise InputError(f"{path}: labelled prompts need columns 'prompt' and 'label'; missing {missing}")
    check_json_prompts(path, table, "prompt")
    n = table.num_rows
    prompts = table.column("prompt").to_pylist()
    labels = table.column("label").to_pylist()
    categories = table.column("category").to_pylist() if "category" in table.column_names else ["unknown"] * n
    splits = table.column("split").to_pylist() if "split" in table.column_names else ["test"] * n
    if split is not None and split not in SPLITS:
        raise InputError(f"split must be one of {SPLITS}, not {split!r}")
    listed = table.column("values").to_pylist() if "values" in table.column_names else [None] * n
    rows = []
    for i in range(n):
        if prompts[i] is None:
            raise InputError(f"{path}: row {i + 1} has no prompt")
        label = read_label(path, i + 1, labels[i])
        if label is None and listed[i]:
            raise InputError(
                f"{path}: row {i + 1}: 'label' says no value ({labels[i]!r}), but 'values' lists {listed[i]!r}"
            )
        if split is None or splits[i] == split:
            rows.append(LabelledPrompt(prompts[i], label, categories[i] or "unknown", splits[i] or "test"))
    return rows


NO_LABEL = (None, "", "none")


def read_label(path: Path, row: int, label: object) -> str | None:
    """A ``label`` cell: a value id, or None for no value (null, empty or ``"none"``, the documented
    spellings); anything else (a number, a list) is an error naming the file and the 1-based row."""
    if label in NO_LABEL:
        return None
    if not isinstance(label, str):
        raise InputError(
            f"{path}: row {row}: 'label' must be a value id, or null, empty or 'none' for no value; got {label!r}"
        )
    return label


@dataclass(frozen=True)
class ValueMetrics:
    precision: float
    recall: float
    f1: float
    support: int
    predicted: int


@dataclass
class EvaluationReport:
    """Per-value precision/recall/F1, their macro average, and the benign false-positive rate."""

    per_value: dict[str, ValueMetrics]
    macro_f1: float
    benign_fpr: float
    benign_count: int
    accuracy: float
    count: int
    by_stage: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["per_value"] = {k: asdict(v) for k, v in self.per_value.items()}
        return data


def score(
    labels: Sequence[str | None],
    predictions: Sequence[str | None],
    categories: Sequence[str],
    value_ids: Sequence[str],
    stages: Sequence[str] | None = None,
) -> EvaluationReport:
    """Metrics of ``predictions`` against ``labels``. Macro-F1 averages the values that occur in the
    labels or the predictions; a value with no true and no predicted prompt is left out."""
    if not (len(labels) == len(predictions) == len(categories)):
        raise ValueError("labels, predictions and categories must have the same length")
    per_value: dict[str, ValueMetrics] = {}
    for value in value_ids:
        tp = sum(1 for y, p in zip(labels, predictions) if y == value and p == value)
        support = sum(1 for y in labels if y == value)
        predicted = sum(1 for p in predictions if p == value)
        if support == 0 and predicted == 0:
            continue
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_value[value] = ValueMetrics(precision, recall, f1, support, predicted)
    benign = [p for p, c in zip(predictions, categories) if c.startswith("benign")]
    by_stage: dict[str, int] = {}
    for stage in stages or []:
        by_stage[stage] = by_stage.get(stage, 0) + 1
    return EvaluationReport(
        per_value=per_value,
        macro_f1=sum(m.f1 for m in per_value.values()) / len(per_value) if per_value else 0.0,
        benign_fpr=sum(1 for p in benign if p is not None) / len(benign) if benign else 0.0,
        benign_count=len(benign),
        accuracy=sum(1 for y, p in zip(labels, predictions) if y == p) / len(labels) if labels else 0.0,
        count=len(labels),
        by_stage=by_stage,
    )


class Selects(Protocol):
    def select(self, prompts: Sequence[str]) -> list[Selection]: ...


def evaluate_selector(selector: Selects, rows: Sequence[LabelledPrompt], value_ids: Sequence[str]) -> EvaluationReport:
    selections = selector.select([r.prompt for r in rows])
    return score(
        [r.label for r in rows],
        [s.value_id for s in selections],
        [r.category for r in rows],
        value_ids,
        [s.stage for s in selections],
    )


# Substring rules standing in for the reference implementation: keyword regexes without word
# boundaries for toxicity, and a person-word substring list standing in for its LLM question
# "does the prompt depict a person?".
BASELINE_HARM_PATTERNS: dict[str, str] = {
    "no-nudity": r"nud|naked|nsfw|sex|topless|breast|strip",
    "no-blood": r"blood|gore|gory|bleed",
    "no-horror": r"zombie|horror|dead|corpse|ghost|monster|creepy|scary|demon",
}


class KeywordBaseline:
    """The reference's selection rules (see ``BASELINE_HARM_PATTERNS``). For a person it returns the
    first bias value whose attribute is not stated, using the same explicit-attribute rule as the
    selector, so the comparison isolates keyword and person matching."""

    def __init__(self, registry: Registry, harm_patterns: dict[str, str] | None = None) -> None:
        patterns = harm_patterns if harm_patterns is not None else BASELINE_HARM_PATTERNS
        self.harm = [(v, re.compile(p)) for v, p in patterns.items() if v in registry.ids]
        nouns = sorted({normalize_text(n) for n in registry.person_nouns}, key=len, reverse=True)
        self.person = re.compile("|".join(re.escape(n) for n in nouns))
        self.bias = [v for v in registry.values if v.kind == "bias"]
        self.attributes = ExplicitAttributes(registry)

    def select(self, prompts: Sequence[str]) -> list[Selection]:
        """Every harm pattern that matches, then, for a person, the bias values whose attribute is
        not stated (a multi-label :class:`Selection`, like the selector's)."""
        out = []
        for prompt in prompts:
            text = normalize_text(prompt)
            decisions = [
                ValueDecision(v, 1.0, "keyword", f"pattern {p.pattern!r}") for v, p in self.harm if p.search(text)
            ]
            if self.person.search(text):
                stated = self.attributes.stated(text)
                stage: Stage = "explicit-attribute" if stated else "keyword"
                decisions += [
                    ValueDecision(v.id, 1.0, stage, "person word") for v in self.bias if v.attribute not in stated
                ]
            out.append(Selection.of(decisions, 0.0, "none"))
        return out


def format_report(name: str, report: EvaluationReport) -> str:
    lines = [
        f"{name}: macro-F1 {report.macro_f1:.3f}  benign FPR {report.benign_fpr:.3f} "
        f"({report.benign_count} benign)  accuracy {report.accuracy:.3f}  n={report.count}"
    ]
    lines.append(f"  {'value':<18} {'precision':>9} {'recall':>7} {'F1':>6} {'support':>8} {'predicted':>9}")
    for value, m in report.per_value.items():
        lines.append(f"  {value:<18} {m.precision:>9.3f} {m.recall:>7.3f} {m.f1:>6.3f} {m.support:>8} {m.predicted:>9}")
    if report.by_stage:
        lines.append("  stages: " + ", ".join(f"{k} {v}" for k, v in sorted(report.by_stage.items())))
    return "\n".join(lines)
