"""The report of the LiVO vs Diffusion-DPO benchmark, rendered from its ``results.json`` dict.

The benchmark (``benchmarks/livo_vs_dpo.py``) measures; this module only presents, so a report can
be re-rendered from a saved ``results.json`` without training anything:

- ``curves.png``: each metric on the test split against the training step, one line per method with
  its 95% band, and the target as a dashed line where one applies;
- ``results.md``: the test-split summary table, each method's learning-rate grid on the dev split
  and the command that produced the results (heading-free, so it can be pasted into the docs);
- ``index.html``: one self-contained page (no scripts, no external files: images are data URIs) with
  the splits, the targets, the tables, the curves, the image grids, the command and the settings.

Every file is written atomically (``livo.permissions.write_atomic``), so a
reader never sees half a report. matplotlib is imported only when plotting, so importing this module
stays cheap.

    write_report(json.loads(Path("results.json").read_text()), Path("/tmp/livo-vs-dpo"))
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from livo.permissions import write_atomic

TITLE = "LiVO vs Diffusion-DPO on the toy world (held-out subjects)"
# Which way is better, for the panel titles.
BETTER = {"d1": "lower", "d2": "lower", "harm_rate": "lower"}
# Metric key -> what the report calls it, in display order (tables and panels).
METRICS: dict[str, str] = {
    "d1": "D1",
    "d2": "D2",
    "harm_rate": "harm rate",
    "fidelity_people": "fidelity people",
    "fidelity_harmful": "fidelity harmful",
    "fidelity_benign": "fidelity benign",
}
MISSING = "n/a"
NOT_APPLICABLE = "—"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DPI = 110


class Strong(str):
    """A table cell to emphasise (bold in markdown, ``<strong>`` in HTML): the chosen learning rate."""


class Table(NamedTuple):
    """One table, kept as cells so the markdown and the HTML are rendered from the same data.

    (A NamedTuple rather than a dataclass: benchmarks/ is no package, and a dataclass needs its module
    in sys.modules, which loading the file with importlib does not guarantee.)"""

    header: list[str]
    rows: list[list[str]]


# ---------------------------------------------------------------------------------------------------
# Cell formatting: one place decides how a number reads, so every table agrees.


def _number(value: Any) -> float | None:
    """The value as a float, or None when it is absent or not a finite number (a metric left out)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def format_interval(interval: Mapping[str, Any] | None) -> str:
    """``0.120 [0.080, 0.160]``: the value and its 95% interval; the value alone when no interval."""
    interval = interval or {}
    value = _number(interval.get("value"))
    if value is None:
        return MISSING
    low, high = _number(interval.get("low")), _number(interval.get("high"))
    if low is None or high is None:
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def format_value(interval: Mapping[str, Any] | None) -> str:
    """The value alone (3 decimals): for the dense per-step cells of the learning-rate grids."""
    value = _number((interval or {}).get("value"))
    return MISSING if value is None else f"{value:.3f}"


def format_learning_rate(rate: Any) -> str:
    """``2e-3`` rather than ``0.002`` or ``2.00e-03``: learning rates are read by their exponent."""
    number = _number(rate)
    if number is None:
        return MISSING
    if number == 0:
        return "0"
    mantissa, exponent = f"{number:.2e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def format_step(step: Any, max_steps: Any) -> str:
    """The step a method met the targets at, or ``not reached in 2,000`` (the budget it had)."""
    number = _number(step)
    if number is not None:
        return f"{int(number):,}"
    budget = _number(max_steps)
    return f"not reached in {int(budget):,}" if budget is not None else "not reached"


def format_seconds(seconds: Any) -> str:
    """``61 s``: wall time to the targets; whole seconds are as precise as such a timing is."""
    number = _number(seconds)
    return NOT_APPLICABLE if number is None else f"{round(number):,} s"


def _reduction(d1: Mapping[str, Any] | None, base_d1: Mapping[str, Any] | None) -> str:
    """How much of the base model's D1 a method removed, as a percentage (negative: it grew)."""
    value, base = _number((d1 or {}).get("value")), _number((base_d1 or {}).get("value"))
    if value is None or base is None or base == 0:
        return MISSING
    return f"{1 - value / base:.1%}"


def _last_point(points: Sequence[Mapping[str, Any]] | None) -> Mapping[str, Any]:
    """The latest evaluation of a run: what a method ends at is what the summary reports."""
    if not points:
        return {}
    return max(points, key=lambda point: _number(point.get("step")) or 0)


def _is_chosen(rate: Any, chosen: Any) -> bool:
    """Whether a grid row is the chosen rate (floats from JSON: compared with a tolerance)."""
    a, b = _number(rate), _number(chosen)
    return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9)


# ---------------------------------------------------------------------------------------------------
# Tables.


def summary_table(results: Mapping[str, Any]) -> Table:
    """The test-split table: the base model, then each method at its last curve point."""
    header = [
        "method",
        "lr (chosen on dev)",
        *(METRICS["d1"], "D1 reduction"),
        *(METRICS[key] for key in list(METRICS)[1:]),
        "steps to targets",
        "wall time to targets",
        "peak memory per rank (MB)",
        "trainable params",
    ]
    base = results.get("base", {}).get("test") or {}
    max_steps = results.get("targets", {}).get("max_steps")

    def metric_cells(metrics: Mapping[str, Any], reduction: str) -> list[str]:
        others = [format_interval(metrics.get(key)) for key in list(METRICS)[1:]]
        return [format_interval(metrics.get("d1")), reduction, *others]

    # The base's reduction of its own D1, its steps, time and memory to the targets say nothing.
    rows = [["base (no value)", NOT_APPLICABLE, *metric_cells(base, NOT_APPLICABLE), *[NOT_APPLICABLE] * 4]]
    for key, method in results.get("methods", {}).items():
        reached = method.get("reached") or {}
        last = _last_point(method.get("curve"))
        memory = _number(method.get("peak_memory_mb_per_rank"))
        parameters = _number(method.get("trainable_parameters"))
        rows.append(
            [
                str(method.get("label", key)),
                format_learning_rate(method.get("chosen_learning_rate")),
                *metric_cells(last, _reduction(last.get("d1"), base.get("d1"))),
                format_step(reached.get("step"), max_steps),
                format_seconds(reached.get("seconds")),
                MISSING if memory is None else f"{memory:,.1f}",
                MISSING if parameters is None else f"{int(parameters):,}",
            ]
        )
    return Table(header, rows)


def grid_table(method: Mapping[str, Any]) -> Table:
    """One method's learning-rate grid on dev: D1 along the run, where it ended, which rate won."""
    grid = method.get("grid") or []
    steps = sorted(
        {
            int(step)
            for entry in grid
            for point in entry.get("dev") or []
            if (step := _number(point.get("step"))) is not None
        }
    )
    header = [
        "lr",
        *(f"D1 at {step:,}" for step in steps),
        "harm at last step",
        "benign fidelity at last step",
        "meets targets at",
        "chosen",
    ]
    rows = []
    for entry in grid:
        by_step = {int(_number(point.get("step")) or 0): point for point in entry.get("dev") or []}
        last = _last_point(entry.get("dev"))
        met = _number(entry.get("meets_targets_at"))
        chosen = _is_chosen(entry.get("learning_rate"), method.get("chosen_learning_rate"))
        rows.append(
            [
                format_learning_rate(entry.get("learning_rate")),
                *(format_value(by_step.get(step, {}).get("d1")) for step in steps),
                format_interval(last.get("harm_rate")),
                format_interval(last.get("fidelity_benign")),
                "not met" if met is None else f"{int(met):,}",
                Strong("yes") if chosen else "",
            ]
        )
    return Table(header, rows)


def splits_table(splits: Mapping[str, Mapping[str, Sequence[str]]]) -> Table:
    """Which people and objects each split holds: the test split's subjects are never trained on."""
    kinds: list[str] = []
    for split in splits.values():
        kinds += [kind for kind in split if kind not in kinds]
    rows = [[name, *(", ".join(map(str, split.get(kind) or [])) for kind in kinds)] for name, split in splits.items()]
    return Table(["split", *kinds], rows)


def targets_lines(targets: Mapping[str, Any]) -> list[str]:
    """The targets in words, for the page and the caption of the summary table."""
    lines = []
    if (reduction := _number(targets.get("d1_reduction"))) is not None:
        lines.append(f"D1 reduced by at least {reduction:.0%} from the base model")
    if (harm := _number(targets.get("max_harm"))) is not None:
        lines.append(f"harm rate at most {harm:.2f}")
    if (points := _number(targets.get("fidelity_points"))) is not None:
        lines.append(f"benign fidelity at most {points:.2f} below the base model's")
    if (steps := _number(targets.get("max_steps"))) is not None:
        lines.append(f"all within {int(steps):,} training steps")
    return lines


# ---------------------------------------------------------------------------------------------------
# Markdown.


def _markdown_cell(cell: str) -> str:
    """A cell made safe for a markdown table: a ``|`` in a label would split the row, and a ``<``
    would start an HTML tag that the renderer hides (both are backslash-escaped)."""
    text = str(cell).replace("\\", "\\\\").replace("|", "\\|").replace("<", "\\<").replace("\n", " ")
    return f"**{text}**" if isinstance(cell, Strong) else text


def table_markdown(table: Table) -> str:
    """A GitHub-flavoured markdown table."""
    lines = [
        "| " + " | ".join(_markdown_cell(cell) for cell in table.header) + " |",
        "|" + "|".join("---" for _ in table.header) + "|",
    ]
    lines += ["| " + " | ".join(_markdown_cell(cell) for cell in row) + " |" for row in table.rows]
    return "\n".join(lines)


def markdown_table(results: Mapping[str, Any]) -> str:
    """The summary table in markdown (the docs quote it as is)."""
    return table_markdown(summary_table(results))


def results_markdown(results: Mapping[str, Any]) -> str:
    """``results.md``: summary, learning-rate grids, command. No headings, so it nests anywhere."""
    targets = targets_lines(results.get("targets", {}))
    parts = [
        "Test split (held-out subjects), each method at its last evaluation; 95% intervals in brackets."
        + (f" Targets: {'; '.join(targets)}." if targets else ""),
        markdown_table(results),
    ]
    for key, method in results.get("methods", {}).items():
        label = _markdown_cell(str(method.get("label", key)))
        parts.append(f"Learning-rate grid of {label} on the dev split (the chosen rate is marked):")
        parts.append(table_markdown(grid_table(method)))
    if command := results.get("command"):
        parts.append(f"```bash\n{command}\n```")
    return "\n\n".join(parts) + "\n"


# ---------------------------------------------------------------------------------------------------
# Curves.


def _target(metric: str, results: Mapping[str, Any]) -> float | None:
    """Where a metric's target line goes, or None for a metric without a target (or without data)."""
    targets = results.get("targets", {})
    base = results.get("base", {}).get("test") or {}
    if metric == "d1":
        reduction, d1 = _number(targets.get("d1_reduction")), _number((base.get("d1") or {}).get("value"))
        return None if reduction is None or d1 is None else (1 - reduction) * d1
    if metric == "harm_rate":
        return _number(targets.get("max_harm"))
    if metric == "fidelity_benign":
        points = _number(targets.get("fidelity_points"))
        fidelity = _number((base.get("fidelity_benign") or {}).get("value"))
        return None if points is None or fidelity is None else fidelity - points
    return None


def _or_nan(value: Any) -> float:
    """A number for matplotlib: NaN (a gap in the line or band) where the value is absent."""
    number = _number(value)
    return math.nan if number is None else number


def _series(
    points: Sequence[Mapping[str, Any]], metric: str
) -> tuple[list[float], list[float], list[float], list[float]]:
    """Steps, values, lows and highs of one metric along a curve; NaN where absent, so lines break."""
    steps, values, lows, highs = [], [], [], []
    for point in sorted(points, key=lambda point: _number(point.get("step")) or 0):
        interval = point.get(metric) or {}
        steps.append(_number(point.get("step")) or 0.0)
        values.append(_or_nan(interval.get("value")))
        lows.append(_or_nan(interval.get("low")))
        highs.append(_or_nan(interval.get("high")))
    return steps, values, lows, highs


def _curve_with_base(method: Mapping[str, Any], base: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A method's test curve, starting from the base model (the benchmark's curves already do)."""
    curve = list(method.get("curve") or [])
    if curve and not any(_number(point.get("step")) == 0 for point in curve) and base:
        curve.insert(0, {"step": 0, **base})
    return curve


def _set_step_axis(axis: Any, steps: Sequence[float]) -> None:
    """Ticks exactly at the evaluated steps; symlog when they are not evenly spaced (0, 250, 500,
    1000, 2000 would crowd the early steps on a linear axis), linear when they are."""
    from matplotlib.ticker import NullLocator

    ordered = sorted(set(steps))
    gaps = {b - a for a, b in zip(ordered, ordered[1:])}
    positive = [step for step in ordered if step > 0]
    if len(gaps) > 1 and positive:
        axis.set_xscale("symlog", linthresh=positive[0], linscale=0.6)
        axis.xaxis.set_minor_locator(NullLocator())
    if ordered:
        axis.set_xticks(ordered, labels=[f"{int(step):,}" for step in ordered])
    axis.set_xlabel("training step")


def plot_curves(results: Mapping[str, Any], path: Path) -> Path:
    """Writes the metric-vs-step panels (test split) to ``path`` and returns it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    base = results.get("base", {}).get("test") or {}
    methods = results.get("methods", {})
    curves = {key: _curve_with_base(method, base) for key, method in methods.items()}
    steps = [float(step) for step in results.get("curve_steps") or []] or sorted(
        {_number(point.get("step")) or 0.0 for curve in curves.values() for point in curve}
    )
    figure = Figure(figsize=(15, 8.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, 3).flatten()
    colors = [f"C{index}" for index in range(len(methods))]
    for axis, (metric, name) in zip(axes, METRICS.items()):
        plotted = False
        for color, (key, method) in zip(colors, methods.items()):
            xs, values, lows, highs = _series(curves[key], metric)
            if all(math.isnan(value) for value in values):
                continue
            label = str(method.get("label", key)).replace("$", r"\$")  # a "$" would start mathtext
            axis.plot(xs, values, marker="o", color=color, label=label)
            axis.fill_between(xs, lows, highs, color=color, alpha=0.18, linewidth=0)
            plotted = True
        if (target := _target(metric, results)) is not None:
            axis.axhline(target, linestyle="--", color="0.3", linewidth=1.2, label="target")
        if not plotted:
            axis.text(0.5, 0.5, "no data", ha="center", va="center", transform=axis.transAxes, color="0.5")
        axis.set_title(f"{name} ({BETTER.get(metric, 'higher')} is better)")
        axis.grid(True, alpha=0.3)
        _set_step_axis(axis, steps)
    handles: dict[str, Any] = {}
    for axis in axes:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    if handles:
        figure.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=len(handles))
    figure.suptitle("Test split, 95% bands; step 0 is the base model")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return write_atomic(path, buffer.getvalue())


# ---------------------------------------------------------------------------------------------------
# HTML.


def _html_table(table: Table) -> str:
    """An HTML table, every cell escaped."""

    def cell(tag: str, text: str) -> str:
        body = html.escape(str(text))
        return f"<{tag}>{'<strong>' + body + '</strong>' if isinstance(text, Strong) else body}</{tag}>"

    head = "".join(cell("th", text) for text in table.header)
    body = "\n".join("<tr>" + "".join(cell("td", text) for text in row) + "</tr>" for row in table.rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def png_data_uri(path: Path) -> str:
    """The PNG at ``path`` as a data URI, so the page travels as one file."""
    if not path.is_file():
        raise FileNotFoundError(f"report image not found: {path}")
    data = path.read_bytes()
    if not data.startswith(PNG_MAGIC):
        raise ValueError(f"report image is not a PNG: {path}")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _figure(uri: str, caption: str) -> str:
    """An embedded image with its caption (also its alt text)."""
    text = html.escape(caption)
    return f'<figure><img src="{uri}" alt="{text}"><figcaption>{text}</figcaption></figure>'


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1400px; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; white-space: nowrap; }
th { background: #f3f3f3; }
figure { margin: 1rem 0; }
img { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 0.9rem; }
pre { background: #f6f6f6; padding: 0.75rem; overflow-x: auto; }
"""


def results_html(results: Mapping[str, Any], curves_uri: str, grids: Sequence[tuple[str, str]]) -> str:
    """``index.html``: the whole report as one page; ``grids`` are (title, data URI) pairs."""
    labels = [str(method.get("label", key)) for key, method in results.get("methods", {}).items()]
    parts = [
        "<!doctype html>",
        '<html lang="en">',
        f'<head><meta charset="utf-8"><title>{html.escape(TITLE)}</title><style>{STYLE}</style></head>',
        "<body>",
        f"<h1>{html.escape(TITLE)}</h1>",
        "<h2>Splits</h2>",
        _html_table(splits_table(results.get("splits", {}))),
        "<h2>Targets</h2>",
        "<ul>"
        + "".join(f"<li>{html.escape(line)}</li>" for line in targets_lines(results.get("targets", {})))
        + "</ul>",
        "<h2>Results on the test split</h2>",
        "<p>Each method at its last evaluation; 95% intervals in brackets.</p>",
        _html_table(summary_table(results)),
        "<h2>Curves</h2>",
        _figure(curves_uri, "Each metric on the test split against the training step; dashed: the target"),
    ]
    if grids:
        rows = ", ".join(["base", *labels])
        parts.append("<h2>Image grids</h2>")
        parts.append(f"<p>Rows, top to bottom: {html.escape(rows)}; the same seeds in every row.</p>")
        parts += [_figure(uri, title) for title, uri in grids]
    parts.append("<h2>Learning-rate grids (dev split)</h2>")
    for key, method in results.get("methods", {}).items():
        parts.append(f"<h3>{html.escape(str(method.get('label', key)))}</h3>")
        parts.append(_html_table(grid_table(method)))
    if command := results.get("command"):
        parts += ["<h2>Command</h2>", f"<pre><code>{html.escape(str(command))}</code></pre>"]
    settings = json.dumps(results.get("settings", {}), indent=2, default=str)
    parts += ["<h2>Settings</h2>", f"<pre>{html.escape(settings)}</pre>", "</body>", "</html>"]
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------------------------------------------
# Files.


def write_report(results: dict[str, Any], folder: Path) -> Path:
    """Writes folder/curves.png, folder/results.md and folder/index.html; returns the index.html path.

    The image grids (paths relative to ``folder``) are read first, so a missing one raises
    FileNotFoundError before any file of the report is written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    grids = [(str(grid["title"]), png_data_uri(folder / grid["path"])) for grid in results.get("grids") or []]
    curves = plot_curves(results, folder / "curves.png")
    write_atomic(folder / "results.md", results_markdown(results).encode("utf-8"))
    page = results_html(results, png_data_uri(curves), grids)
    return write_atomic(folder / "index.html", page.encode("utf-8"))
