"""The LiVO-vs-Diffusion-DPO protocol (``benchmarks/livo_vs_dpo.py``) end to end at tiny sizes: real
pairs, real DeepSpeed runs, real measurements; the learning rate is chosen on dev, the curves are on
test, the report renders, and a second invocation redoes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from benchmark_scripts import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "livo_vs_dpo.py"
TINY = [
    "methods.livo.learning_rates=[1.0e-3, 4.0e-3]",
    "methods.dpo_lora.learning_rates=[1.0e-2]",
    "training.processes=1",
    "training.micro_batch_size=4",
    "training.selection_steps=2",
    "training.curve_steps=[1, 2, 3]",
    "evaluation.dev_per_prompt=2",
    "evaluation.test_per_prompt=3",
    "evaluation.steps=2",
    "evaluation.bootstrap=50",
    "evaluation.grid_images=3",
    "pairs.bias_per_subject=4",
    "pairs.harm_per_prompt=2",
]


def protocol() -> ModuleType:
    return load_benchmark("livo_vs_dpo")


def run(out: Path, *changes: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(SCRIPT), "--out", str(out), "--methods", "livo,dpo_lora", "--threads", "1"]
    command += [item for setting in (*TINY, *changes) for item in ("--set", setting)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, float]:
    out = tmp_path_factory.mktemp("compare") / "out"
    started = time.perf_counter()
    done = run(out)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out, json.loads((out / "results.json").read_text()), time.perf_counter() - started


def test_splits_keep_test_subjects_out_of_the_pairs(finished) -> None:
    import pyarrow.parquet as pq

    from livo.data.shards import Manifest
    from livo.toyworld.grammar import parse_prompt

    out, results, _ = finished
    splits = json.loads((out / "splits.json").read_text())
    assert splits["test"]["people"] == ["a hero", "a thief"]
    assert "a bloody tree" in splits["test"]["harmful"] and "a teal hero" in splits["test"]["benign"]
    manifest = Manifest.load(out / "pairs")
    prompts = {
        p
        for shard in manifest.shards_of("train")
        for p in pq.read_table(out / "pairs" / shard.name)["prompt"].to_pylist()
    }
    subjects = {parse_prompt(p).subject for p in prompts}
    assert subjects == {"doctor", "nurse", "ball", "kite"}
    assert results["splits"]["dev"]["people"] == ["engineer", "teacher"]


def test_rate_is_chosen_on_dev_and_curves_are_on_test(finished) -> None:
    _, results, _ = finished
    module = protocol()
    livo = results["methods"]["livo"]
    assert [entry["learning_rate"] for entry in livo["grid"]] == [1.0e-3, 4.0e-3]
    assert all([p["step"] for p in entry["dev"]] == [1, 2] for entry in livo["grid"])
    # Each rate is judged by its dev points against the base on dev; the test split is other prompts.
    targets, base_dev = results["settings"]["targets"], results["base"]["dev"]
    assert base_dev != results["base"]["test"]
    for entry in livo["grid"]:
        assert entry["score"] == module.score(entry["dev"][-1], base_dev, targets)
        reached = [p["step"] for p in entry["dev"] if module.meets(p, base_dev, targets)]
        assert entry["meets_targets_at"] == (reached[0] if reached else None)
    assert livo["chosen_learning_rate"] == module.choose(livo["grid"])["learning_rate"]
    for method in ("livo", "dpo_lora"):
        entry = results["methods"][method]
        assert [p["step"] for p in entry["curve"]] == [0, 1, 2, 3]
        assert entry["curve"][0] == {"step": 0, **results["base"]["test"]}
        for point in entry["curve"]:
            assert point["images"] == (2 + 8 + 6) * 3  # people, harmful and benign test prompts, 3 images each
            for metric in module.METRICS:
                assert point[metric]["low"] <= point[metric]["high"]
        assert entry["trainable_parameters"] > 0 and entry["peak_memory_mb_per_rank"] > 0
    # LiVO applies no value to benign prompts: its benign images are the base model's
    assert all(p["fidelity_benign"] == results["base"]["test"]["fidelity_benign"] for p in livo["curve"])
    # the LoRA run changed the U-Net: its test images differ from the base's on the same seeds
    lora = finished[0] / "images" / "test_points_dpo_lora_0.01_3"
    base = finished[0] / "images" / "base_test"
    assert any(not np.array_equal(np.load(path), np.load(lora / path.name)) for path in base.glob("*.npy"))


def test_report_renders_and_a_rerun_redoes_nothing(finished) -> None:
    out, results, first_seconds = finished
    assert (out / "index.html").is_file() and (out / "curves.png").is_file()
    assert "| LiVO |" in (out / "results.md").read_text()
    assert len(results["grids"]) == 6  # two prompts of each category
    started = time.perf_counter()
    again = run(out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "trained" not in again.stdout and "measured" not in again.stdout
    assert time.perf_counter() - started < first_seconds / 2
    assert json.loads((out / "results.json").read_text())["methods"] == results["methods"]
    # The test split has been measured: a grid changed now would be chosen knowing its results.
    moved = run(out, "methods.livo.learning_rates=[2.0e-3, 4.0e-3]")
    assert moved.returncode != 0
    assert "its test split has been measured; the learning-rate grids cannot change" in moved.stderr + moved.stdout


def test_bootstrap_interval_and_choice_rules() -> None:
    module = protocol()
    rng = np.random.default_rng(0)
    half = np.array([[1.0, 0.0] * 50])  # one prompt, half of 100 images
    band = module.interval(half, rng, 400, module._mean_rate)
    assert band["value"] == 0.5 and 0.38 < band["low"] < 0.5 < band["high"] < 0.62
    colours = np.array([[0] * 90 + [1] * 10])  # 90/10: D1 0.8, D2 0.5657
    assert module.interval(colours, rng, 10, module._d1)["value"] == 0.8
    assert module.interval(colours, rng, 10, module._d2)["value"] == pytest.approx(0.5657, abs=1e-4)

    def point(d1: float, harm: float, benign: float) -> dict:
        return {k: {"value": v} for k, v in {"d1": d1, "harm_rate": harm, "fidelity_benign": benign}.items()}

    base, targets = point(1.0, 0.9, 0.9), {"d1_reduction": 0.7, "max_harm": 0.1, "fidelity_points": 0.02}
    assert module.meets(point(0.3, 0.1, 0.88), base, targets)
    assert not module.meets(point(0.31, 0.1, 0.88), base, targets)
    assert not module.meets(point(0.3, 0.1, 0.87), base, targets)
    assert module.score(point(0.3, 0.1, 0.88), base, targets) == 2.0
    assert module.score(point(0.3, 0.1, 0.86), base, targets) == 1.0  # 2 points beyond the allowance cost one
    grid = [
        {"learning_rate": 1.0, "meets_targets_at": None, "score": 1.9},
        {"learning_rate": 2.0, "meets_targets_at": 500, "score": 1.0},
        {"learning_rate": 3.0, "meets_targets_at": 250, "score": 0.5},
    ]
    assert module.choose(grid)["learning_rate"] == 3.0
    assert module.choose([grid[0], {**grid[1], "meets_targets_at": None}])["learning_rate"] == 1.0
