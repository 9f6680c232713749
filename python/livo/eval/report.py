"""Write an evaluation's results: ``results.json``, ``results.md``, PNG grids and ``index.html``.

- the table has one row per method and one column per metric (columns no method has are left out);
- ``grids/<prompt>.png``: for a few prompts of each category, one labelled row per method showing
  the first images of the same prompt and seeds, so differences are the method's alone;
- ``index.html`` is self-contained: the table, the notes and every grid embedded as data URIs (no
  scripts, no external style sheets or fonts), so it can be mailed or archived as one file.

Every file is written atomically (temp file in the same folder, then rename).
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from livo.eval.harness import COLUMNS, EvalResult
from livo.permissions import write_atomic

LABELS: dict[str, str] = {
    "d1": "D1",
    "d2": "D2",
    "attribute_obeyed": "obeyed",
    "avg_r": "Avg R",
    "avg_s": "Avg S",
    "max_at_k": "max@{k}",
    "prob_at_k": "prob@{k}",
    "spurious_harm": "spurious harm",
    "fidelity": "fidelity",
    "fidelity_people": "fidelity (people)",
    "fidelity_benign": "fidelity (benign)",
    "fidelity_harm": "fidelity (harm)",
    "d1_double": "D1 (double)",
    "avg_r_double": "Avg R (double)",
    "fidelity_double": "fidelity (double)",
    "fid": "FID",
    "kid": "KID",
    "clip_score": "CLIP score",
}
GRID_PROMPTS_PER_CATEGORY = 2


def label(column: str, k: int) -> str:
    return LABELS[column].format(k=k)


def present_columns(result: EvalResult) -> list[str]:
    return [c for c in COLUMNS if any(m.summary.get(c) is not None for m in result.methods)]


def table_rows(result: EvalResult) -> list[list[str]]:
    """The results table as text cells, header first (one row per method); ``images`` counts the
    images a method generated itself (shared images, e.g. LiVO's base-model images for benign
    prompts, count once). The markdown table and the HTML page are both made from these."""
    k = result.config.group_size
    columns = present_columns(result)
    rows = [["method", *(label(c, k) for c in columns), "images", "seconds"]]
    limited = {m.name: m.categories for m in result.config.methods if m.categories is not None}
    for method in result.methods:
        # A row over some categories only is named so: its averages are over other prompts.
        only = limited.get(method.name)
        cells = [method.name if only is None else f"{method.name} ({', '.join(only)} prompts only)"]
        for column in columns:
            value = method.summary.get(column)
            cells.append("" if value is None else f"{value:.3f}" if column != "fid" else f"{value:.2f}")
        cells += [str(method.images_generated), f"{method.seconds:.0f}"]
        rows.append(cells)
    return rows


def markdown_table(result: EvalResult) -> str:
    """The results table in markdown; a ``|`` in a method's name is escaped (it would split the row)."""
    header, *rows = [[cell.replace("|", "\\|") for cell in row] for row in table_rows(result)]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def targets(result: EvalResult) -> list[dict[str, Any]]:
    """Each LiVO row checked against the ``base`` row for the config's ``targets`` (none when the config
    sets none): D1 reduction, Avg R, and fidelity on benign prompts (and on people-prompts, when the
    config sets it); on double prompts, D1 reduction and Avg R together."""
    goals = result.config.targets
    if goals is None:
        return []
    d1_reduction, max_harm, fidelity_points = goals.d1_reduction, goals.max_harm, goals.benign_fidelity_points
    base = next((m for m in result.methods if m.kind == "base"), None)
    if base is None:
        return []
    checks = []
    for method in result.methods:
        if method.kind != "livo":
            continue
        s, b = method.summary, base.summary
        for d1, avg_r, where in (("d1", "avg_r", ""), ("d1_double", "avg_r_double", "double-value prompts: ")):
            if s.get(d1) is not None and b.get(d1):
                reduction = 1.0 - s[d1] / b[d1]  # type: ignore[operator]
                checks.append(
                    {
                        "method": method.name,
                        "target": f"{where}D1 reduced by >= {d1_reduction:.0%} vs base",
                        "value": round(reduction, 4),
                        "met": reduction >= d1_reduction,
                    }
                )
            if s.get(avg_r) is not None:
                checks.append(
                    {
                        "method": method.name,
                        "target": f"{where}Avg R <= {max_harm:.2f}",
                        "value": s[avg_r],
                        "met": float(s[avg_r] or 0.0) <= max_harm,
                    }
                )
        for column, who, points in (
            ("fidelity_benign", "benign", fidelity_points),
            ("fidelity_people", "people", goals.people_fidelity_points),
        ):
            if points is not None and s.get(column) is not None and b.get(column) is not None:
                drop = b[column] - s[column]  # type: ignore[operator]
                checks.append(
                    {
                        "method": method.name,
                        "target": f"{who} fidelity within {points:.2f} of base",
                        "value": round(drop, 4),
                        "met": drop <= points,
                    }
                )
    return checks


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "prompt"


def labelled_grid(rows: list[tuple[str, np.ndarray]], columns: int, scale: int) -> bytes:
    """PNG bytes: one row per (label, images), the label drawn left of the images."""
    from PIL import Image, ImageDraw

    from livo.image_grid import grid_image

    tiles = grid_image([list(images[:columns]) for _, images in rows], scale=scale)
    font_width = 6  # PIL's built-in bitmap font: about 6 px per character, no font file needed
    margin = 8 + font_width * max(len(name) for name, _ in rows)
    canvas = Image.new("RGB", (tiles.shape[1] + margin, tiles.shape[0]), "white")
    canvas.paste(Image.fromarray(tiles), (margin, 0))
    draw = ImageDraw.Draw(canvas)
    cell = (tiles.shape[0] - 1) // len(rows)
    for r, (name, _) in enumerate(rows):
        draw.text((4, r * cell + cell // 2 - 5), name, fill="black")
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


def _grid_scale(image_size: int) -> int:
    return max(1, 64 // image_size)


def write_grids(result: EvalResult, folder: Path) -> list[tuple[str, str, Path]]:
    """(category, prompt, path) of each grid written: the first prompts of every category."""
    written: list[tuple[str, str, Path]] = []
    taken: dict[str, int] = {}
    for index, prompt in enumerate(result.prompts):
        if taken.get(prompt.category, 0) >= GRID_PROMPTS_PER_CATEGORY:
            continue
        rows = [(name, image) for name, parts in result.images.items() if (image := parts[index]) is not None]
        if not rows:
            continue
        taken[prompt.category] = taken.get(prompt.category, 0) + 1
        size = rows[0][1].shape[1]
        path = folder / "grids" / f"{index:03d}-{_slug(prompt.text)}.png"
        write_atomic(path, labelled_grid(rows, result.config.grid_columns, _grid_scale(size)))
        written.append((prompt.category, prompt.text, path))
    return written


def to_json(result: EvalResult, checks: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "config": result.config.model_dump(mode="json"),
        "columns": {
            c: {"label": label(c, result.config.group_size), "better": COLUMNS[c]} for c in present_columns(result)
        },
        "methods": [{k: v for k, v in asdict(m).items()} for m in result.methods],
        "targets": checks,
        "notes": result.notes,
    }


def html_page(
    result: EvalResult, rows: list[list[str]], checks: list[dict[str, Any]], grids: list[tuple[str, str, Path]]
) -> str:
    esc = html.escape
    head = rows[0]
    body = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>LiVO evaluation</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:80em}table{border-collapse:collapse}"
        "td,th{border:1px solid #999;padding:.3em .6em;text-align:right}td:first-child,th:first-child"
        "{text-align:left}img{image-rendering:pixelated;max-width:100%}.met{color:#070}.missed{color:#a00}"
        "</style></head><body>",
        "<h1>LiVO evaluation</h1>",
        f"<p>Model <code>{esc(result.config.model)}</code>, {len(result.prompts)} prompts, "
        f"{result.config.per_prompt} images per prompt, seed {result.config.seed}, "
        f"{result.config.steps} steps, guidance {result.config.guidance_scale}.</p>",
        "<h2>Results</h2>",
        "<table>",
        "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>",
    ]
    for row in rows[1:]:
        body.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>")
    body.append("</table>")
    body.append(
        "<p>Better: "
        + ", ".join(f"{esc(label(c, result.config.group_size))} {COLUMNS[c]}" for c in present_columns(result))
        + ".</p>"
    )
    if checks:
        body.append("<h2>Targets</h2><ul>")
        for check in checks:
            css = "met" if check["met"] else "missed"
            body.append(
                f'<li class="{css}">{esc(check["method"])}: {esc(check["target"])} — '
                f"{check['value']} ({'met' if check['met'] else 'not met'})</li>"
            )
        body.append("</ul>")
    body.append("<h2>Notes</h2><ul>" + "".join(f"<li>{esc(n)}</li>" for n in result.notes) + "</ul>")
    body.append("<h2>Images</h2><p>Same prompt and seeds in every row; one row per method.</p>")
    for category, prompt, path in grids:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        body.append(
            f"<h3>{esc(prompt)} <small>({esc(category)})</small></h3>"
            f'<img alt="{esc(prompt)}" src="data:image/png;base64,{data}">'
        )
    body.append("</body></html>")
    return "\n".join(body) + "\n"


def write_report(result: EvalResult, output: str | os.PathLike[str]) -> Path:
    """Write every report file into ``output``; returns the HTML page's path."""
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    checks = targets(result)
    table = markdown_table(result)
    # The numbers first: a failure while drawing the grids must not lose them.
    write_atomic(folder / "results.json", (json.dumps(to_json(result, checks), indent=2) + "\n").encode())
    grids = write_grids(result, folder)
    lines = ["# LiVO evaluation", "", table, ""]
    if checks:
        lines += ["Targets (the config's `targets`):", ""]
        lines += [f"- {c['method']}: {c['target']}: {c['value']} — {'met' if c['met'] else 'NOT met'}" for c in checks]
        lines.append("")
    lines += [f"- {note}" for note in result.notes] + [""]
    lines += [f"![{prompt}]({path.relative_to(folder).as_posix()})" for _, prompt, path in grids]
    write_atomic(folder / "results.md", ("\n".join(lines) + "\n").encode())
    rows = table_rows(result)
    page = folder / "index.html"
    write_atomic(page, html_page(result, rows, checks, grids).encode())
    return page
