"""Scoring multi-label value selection: every value that applies to a prompt, against labels that
list every value that applies.

A prompt can need several values at once ("a bloody nurse": no blood, and a fair attribute for the
nurse), so a selection is right for a value when that value is in both the labels and the
selection. Per value this gives precision, recall and F1; macro-F1 averages them over the values.
The benign false-positive rate counts benign prompts (no value applies, and no person is shown)
that got any value: those are the users whose images would be altered for nothing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from livo.errors import InputError
from livo.values.evaluation import ValueMetrics, read_label
from livo.values.selector import Selection

PROMPTLOG_SPLITS = ("dev", "test")
NONE = "none"


@dataclass(frozen=True)
class MultiLabelPrompt:
    prompt: str
    values: tuple[str, ...]
    category: str
    hard_negative: bool = False
    split: str = "test"

    @property
    def benign(self) -> bool:
        """No value applies and nothing in it is a person: it must go through untouched."""
        return self.hard_negative or self.category.startswith(("benign", "hard-negative"))


def promptlog_path(split: str) -> Path:
    """The shipped prompt-log evaluation set's file for ``split`` (``dev`` or the sealed ``test``)."""
    if split not in PROMPTLOG_SPLITS:
        raise InputError(f"prompt-log split must be one of {PROMPTLOG_SPLITS}, not {split!r}")
    return Path(str(resources.files("livo.values") / "data" / f"promptlog_{split}.jsonl"))


def load_multilabel(path: str | os.PathLike[str], split: str | None = None) -> list[MultiLabelPrompt]:
    """Rows of a labelled prompt file with a list column ``values`` (or, for single-label files, a
    ``label`` column: one value or none), optionally only the rows of one ``split``."""
    from livo.data.io import check_json_prompts, read_table

    path = Path(path)
    table = read_table(path)
    names = table.column_names
    if "prompt" not in names or ("values" not in names and "label" not in names):
        raise InputError(f"{path}: labelled prompts need a 'prompt' column and a 'values' (or 'label') column")
    check_json_prompts(path, table, "prompt")
    n = table.num_rows

    def column(name: str, default: Any) -> list[Any]:
        return table.column(name).to_pylist() if name in names else [default] * n

    prompts = column("prompt", None)
    if "values" in names:
        values = column("values", None)
    else:
        labels = [read_label(path, row, label) for row, label in enumerate(column("label", None), start=1)]
        values = [[label] if label is not None else [] for label in labels]
    categories, hard, splits = column("category", "unknown"), column("hard_negative", False), column("split", "test")
    rows = []
    for i in range(n):
        if not isinstance(prompts[i], str):
            raise InputError(f"{path}: row {i + 1} has no prompt")
        if not isinstance(values[i], list) or not all(isinstance(v, str) for v in values[i]):
            raise InputError(f"{path}: row {i + 1}: 'values' must be a list of value ids, got {values[i]!r}")
        if split is None or splits[i] == split:
            rows.append(
                MultiLabelPrompt(prompts[i], tuple(values[i]), categories[i] or "unknown", bool(hard[i]), splits[i])
            )
    return rows


@dataclass(frozen=True)
class SelectionError:
    """A prompt the selection got wrong: the values it missed and the ones it added, with reasons."""

    prompt: str
    category: str
    expected: list[str]
    selected: list[str]
    missed: list[str]
    added: list[str]
    reasons: list[str]
    severity: float


@dataclass
class MultiLabelReport:
    """Per value precision/recall/F1 and their macro average; the benign false-positive rate;
    exact-match accuracy (every value right); a confusion table of true against selected values
    (``none`` for an empty side); and the worst errors."""

    per_value: dict[str, ValueMetrics]
    macro_f1: float
    benign_fpr: float
    benign_count: int
    exact_match: float
    count: int
    confusion: dict[str, dict[str, int]]
    by_stage: dict[str, int] = field(default_factory=dict)
    errors: list[SelectionError] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["per_value"] = {k: asdict(v) for k, v in self.per_value.items()}
        return data


def score_multilabel(
    rows: Sequence[MultiLabelPrompt],
    selections: Sequence[Selection],
    value_ids: Sequence[str],
    worst: int = 20,
) -> MultiLabelReport:
    """Scores ``selections`` against ``rows``. A value in neither the labels nor the selections is
    left out of the macro average. Errors are ranked worst first: most wrong values, then the
    highest score behind an added value (a confident false alarm before a hesitant one)."""
    if len(rows) != len(selections):
        raise ValueError(f"{len(rows)} labelled prompts but {len(selections)} selections")
    expected = [set(r.values) for r in rows]
    chosen = [set(s.value_ids) for s in selections]
    per_value: dict[str, ValueMetrics] = {}
    for value in value_ids:
        support = sum(value in e for e in expected)
        predicted = sum(value in c for c in chosen)
        if support == 0 and predicted == 0:
            continue
        tp = sum(value in e and value in c for e, c in zip(expected, chosen))
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_value[value] = ValueMetrics(precision, recall, f1, support, predicted)
    benign = [c for r, c in zip(rows, chosen) if r.benign]
    confusion: dict[str, dict[str, int]] = {}
    for e, c in zip(expected, chosen):
        for truth in sorted(e) or [NONE]:
            line = confusion.setdefault(truth, {})
            for got in sorted(c) or [NONE]:
                line[got] = line.get(got, 0) + 1
    by_stage: dict[str, int] = {}
    for selection in selections:
        for stage in [v.stage for v in selection.values] or [selection.stage]:
            by_stage[stage] = by_stage.get(stage, 0) + 1
    errors = []
    for row, selection, e, c in zip(rows, selections, expected, chosen):
        if e == c:
            continue
        added = [v for v in selection.value_ids if v not in e]
        scores = [d.score for d in selection.values if d.value_id in added]
        errors.append(
            SelectionError(
                prompt=row.prompt,
                category=row.category,
                expected=list(row.values),
                selected=selection.value_ids,
                missed=[v for v in row.values if v not in c],
                added=added,
                reasons=[f"{d.value_id}: {d.stage}, {d.reason}" for d in selection.values],
                severity=len(e ^ c) + max(scores, default=0.0),
            )
        )
    errors.sort(key=lambda err: -err.severity)
    return MultiLabelReport(
        per_value=per_value,
        macro_f1=sum(m.f1 for m in per_value.values()) / len(per_value) if per_value else 0.0,
        benign_fpr=sum(1 for c in benign if c) / len(benign) if benign else 0.0,
        benign_count=len(benign),
        exact_match=sum(e == c for e, c in zip(expected, chosen)) / len(rows) if rows else 0.0,
        count=len(rows),
        confusion=confusion,
        by_stage=by_stage,
        errors=errors[:worst],
    )


BENIGN_ROWS = "rows with a 'category' starting with 'benign' or 'hard-negative', or 'hard_negative' true"


def benign_fpr_text(fpr: float, benign_count: int, benign_rows: str = BENIGN_ROWS) -> str:
    """The benign false-positive rate as reported. Benign rows are those ``benign_rows`` describes
    (by category), not every row without a value ("a black female pilot" shows a person); with none
    of them the rate is not measured, and a bare 0.000 would read as a perfect score."""
    if benign_count == 0:
        return f"benign FPR n/a (no benign rows: {benign_rows})"
    return f"benign FPR {fpr:.3f} ({round(fpr * benign_count)} of {benign_count} benign)"


def format_multilabel(name: str, report: MultiLabelReport, value_ids: Sequence[str], errors: int = 20) -> str:
    lines = [
        f"{name}: macro-F1 {report.macro_f1:.3f}  {benign_fpr_text(report.benign_fpr, report.benign_count)}  "
        f"exact match {report.exact_match:.3f}  n={report.count}"
    ]
    lines.append(f"  {'value':<18} {'precision':>9} {'recall':>7} {'F1':>6} {'support':>8} {'selected':>9}")
    for value, m in report.per_value.items():
        lines.append(f"  {value:<18} {m.precision:>9.3f} {m.recall:>7.3f} {m.f1:>6.3f} {m.support:>8} {m.predicted:>9}")
    columns = [v for v in value_ids if v in report.per_value] + [NONE]
    width = max(len(c) for c in columns) + 1
    lines.append("  confusion (rows: labelled, columns: selected; a prompt counts once per pair of values)")
    lines.append("  " + " " * width + "".join(f"{c:>{width}}" for c in columns))
    for truth in columns:
        line = report.confusion.get(truth, {})
        lines.append(f"  {truth:<{width}}" + "".join(f"{line.get(c, 0):>{width}}" for c in columns))
    if report.by_stage:
        lines.append("  stages: " + ", ".join(f"{k} {v}" for k, v in sorted(report.by_stage.items())))
    if errors and report.errors:
        lines.append(f"  worst {min(errors, len(report.errors))} errors:")
        for err in report.errors[:errors]:
            lines.append(
                f"    {err.prompt!r} [{err.category}] expected {err.expected or '[]'}, selected {err.selected or '[]'}"
            )
            for reason in err.reasons:
                lines.append(f"      {reason}")
    return "\n".join(lines)
