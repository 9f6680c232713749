"""The LiVO vs Diffusion-DPO report renders a complete results dict into a PNG of curves, a markdown
block and one self-contained HTML page: the numbers that reach the tables are the right ones, the
page has no scripts and embeds every image, labels are escaped, and a missing grid image fails loudly
instead of leaving a hole in the report."""

from __future__ import annotations

import copy
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from benchmark_scripts import load_benchmark

MODULE_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "livo_vs_dpo_report.py"
STEPS = [0, 250, 500, 1000, 2000]


report = load_benchmark("livo_vs_dpo_report")


def interval(value: float, spread: float = 0.04) -> dict[str, float]:
    return {"value": value, "low": value - spread, "high": value + spread}


def metrics(d1: float, harm: float, benign: float = 0.90) -> dict[str, Any]:
    return {
        "images": 800,
        "d1": interval(d1),
        "d2": interval(d1 / 2),
        "harm_rate": interval(harm, 0.02),
        "fidelity_people": interval(0.85),
        "fidelity_harmful": None,  # any metric may be missing
        "fidelity_benign": interval(benign, 0.01),
    }


def curve(d1s: list[float], harms: list[float]) -> list[dict[str, Any]]:
    return [{"step": step, **metrics(d1, harm)} for step, d1, harm in zip(STEPS, d1s, harms)]


def grid_entry(rate: float, d1s: list[float], met: int | None) -> dict[str, Any]:
    dev = [{"step": step, **metrics(d1, 0.05)} for step, d1 in zip(STEPS[1:], d1s)]
    return {"learning_rate": rate, "dev": dev, "meets_targets_at": met, "score": 0.4}


def make_results() -> dict[str, Any]:
    return {
        "settings": {"seed": 0, "note": "a <b>bold</b> setting"},
        "command": "python benchmarks/livo_vs_dpo.py --out /tmp/x",
        "splits": {
            "train": {"people": ["doctor", "nurse"], "objects": ["ball", "kite"]},
            "dev": {"people": ["chef"], "objects": ["cup"]},
            "test": {"people": ["pilot"], "objects": ["drum"]},
        },
        "targets": {"d1_reduction": 0.7, "max_harm": 0.10, "fidelity_points": 0.02, "max_steps": 2000},
        "curve_steps": STEPS,
        "base": {"test": metrics(0.40, 0.30), "dev": metrics(0.42, 0.31)},
        "methods": {
            "livo": {
                "label": "LiVO",
                "grid": [grid_entry(1e-3, [0.3, 0.2, 0.15, 0.1], 1000), grid_entry(2e-3, [0.2, 0.1, 0.1, 0.1], 500)],
                "chosen_learning_rate": 2e-3,
                "curve": curve([0.40, 0.30, 0.20, 0.15, 0.12], [0.30, 0.2, 0.1, 0.08, 0.05]),
                "reached": {"step": 500, "seconds": 61.2},
                "peak_memory_mb_per_rank": 110.5,
                "trainable_parameters": 70464,
                "seconds_per_step": 0.13,
            },
            "dpo_lora": {
                "label": "DPO <LoRA>",
                "grid": [
                    grid_entry(1e-4, [0.4, 0.4, 0.38, 0.37], None),
                    grid_entry(5e-4, [0.4, 0.39, 0.35, 0.3], None),
                ],
                "chosen_learning_rate": 5e-4,
                "curve": curve([0.40, 0.39, 0.37, 0.33, 0.30], [0.30, 0.3, 0.28, 0.25, 0.2]),
                "reached": {"step": None, "seconds": None},
                "peak_memory_mb_per_rank": 2048.0,
                "trainable_parameters": 1234567,
                "seconds_per_step": 0.4,
            },
        },
        "grids": [{"title": "a hero (test, people)", "path": "grids/a-hero.png"}],
    }


@pytest.fixture
def results(tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "grids").mkdir()
    Image.new("RGB", (96, 48), (200, 40, 40)).save(tmp_path / "grids" / "a-hero.png")
    return make_results()


class PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.images: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs).get("src") or "")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def table_rows(markdown: str) -> list[str]:
    """The data rows of the first table in a markdown block."""
    lines = markdown.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith("| method |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def test_writes_the_three_files_with_the_right_numbers(results: dict[str, Any], tmp_path: Path) -> None:
    index = report.write_report(results, tmp_path)

    assert index == tmp_path / "index.html"
    assert {"curves.png", "results.md", "index.html"} <= {path.name for path in tmp_path.iterdir()}
    assert not list(tmp_path.glob(".*.tmp")), "temporary files left behind"
    with Image.open(tmp_path / "curves.png") as image:
        assert image.format == "PNG"
        assert image.width >= 800 and image.height >= 500

    markdown = (tmp_path / "results.md").read_text()
    assert not any(line.startswith("#") for line in markdown.splitlines() if not line.startswith("```"))
    rows = table_rows(markdown)
    # One row for the base and one per method; "<" is backslash-escaped so markdown renderers show it.
    assert [row.split("|")[1].strip() for row in rows] == ["base (no value)", "LiVO", "DPO \\<LoRA>"]
    livo, dpo = rows[1], rows[2]
    # The last curve point: D1 0.120 with its interval, 70% below the base's 0.400.
    assert "0.120 [0.080, 0.160]" in livo
    assert "70.0%" in livo
    assert "| 500 |" in livo and "| 61 s |" in livo and "| 70,464 |" in livo and "| 2e-3 |" in livo
    assert "not reached in 2,000" in dpo and "not reached" not in livo
    assert "| 1,234,567 |" in dpo
    assert "0.400 [0.360, 0.440]" in rows[0]  # the base's own D1
    # The learning-rate grids: the chosen rate's row is marked, the other is not.
    chosen = [line for line in markdown.splitlines() if line.startswith("| 2e-3 |")]
    other = [line for line in markdown.splitlines() if line.startswith("| 1e-3 |")]
    assert len(chosen) == 1 and chosen[0].endswith("| **yes** |")
    assert len(other) == 1 and "**yes**" not in other[0]
    assert "| lr | D1 at 250 | D1 at 500 | D1 at 1,000 | D1 at 2,000 |" in markdown
    assert "```bash\npython benchmarks/livo_vs_dpo.py --out /tmp/x\n```" in markdown
    assert report.markdown_table(results) in markdown

    page = index.read_text()
    parser = PageParser()
    parser.feed(page)
    parser.close()
    assert len(parser.images) == 1 + len(results["grids"])
    assert all(src.startswith("data:image/png;base64,") for src in parser.images)
    assert "script" not in parser.tags and "<script" not in page.lower()
    assert "link" not in parser.tags  # no external CSS or fonts
    text = "".join(parser.text)
    assert report.TITLE in text
    assert "a hero (test, people)" in text
    assert "DPO &lt;LoRA&gt;" in page and "DPO <LoRA>" not in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page  # settings are text, not markup
    assert "0.120 [0.080, 0.160]" in text and "not reached in 2,000" in text
    assert "<strong>yes</strong>" in page
    assert "pilot" in text and "python benchmarks/livo_vs_dpo.py --out /tmp/x" in text


def test_a_missing_grid_image_fails_naming_it(results: dict[str, Any], tmp_path: Path) -> None:
    broken = copy.deepcopy(results)
    broken["grids"].append({"title": "gone", "path": "grids/not-rendered.png"})

    with pytest.raises(FileNotFoundError, match="not-rendered.png"):
        report.write_report(broken, tmp_path)
    assert not (tmp_path / "index.html").exists()


def test_importing_the_module_does_not_import_matplotlib() -> None:
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('report', {str(MODULE_PATH)!r})\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "print('matplotlib' in sys.modules)\n"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "False"
