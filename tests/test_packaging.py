"""The light core: ``pip install`` of the package without extras, into an empty virtual environment,
gives a working data engine (``livo dedup``, ``livo shards write/verify``) with no torch, ray or
deepspeed; a command whose extra is missing says which extra to install, in one line."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(command, **kwargs):
    return subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=900, **kwargs)


@pytest.fixture(scope="module")
def light_core(tmp_path_factory):
    """A virtual environment holding only ``livo`` (no extras) and its core dependencies."""
    uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    venv = tmp_path_factory.mktemp("light-core") / "venv"
    made = run([uv, "venv", "--python", sys.executable, "--seed", venv])
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    # Built from this checkout every time (uv would reuse a cached build of the same project version).
    installed = run([uv, "pip", "install", "--python", python, "--refresh-package", "livo", ROOT], cwd=ROOT)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    return venv


@pytest.mark.timeout(1200)
def test_the_light_core_has_no_heavy_dependency(light_core):
    python = light_core / "bin" / "python"
    probe = (
        "import importlib.util as u, json; print(json.dumps({m: u.find_spec(m) is not None for m in "
        "('torch', 'ray', 'deepspeed', 'diffusers', 'faiss', 'livo._native')}))"
    )
    found = json.loads(run([python, "-c", probe]).stdout)
    assert found == {
        "torch": False,
        "ray": False,
        "deepspeed": False,
        "diffusers": False,
        "faiss": False,
        "livo._native": True,
    }, found


@pytest.mark.timeout(1200)
def test_the_light_core_deduplicates_and_writes_verified_shards(light_core, tmp_path):
    livo = light_core / "bin" / "livo"
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("A smiling doctor.\na smiling doctor\na red fox at dawn\n", encoding="utf-8")
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    deduped = run([livo, "dedup", prompts, "-o", tmp_path / "dedup.parquet"], env=environ)
    assert deduped.returncode == 0, deduped.stderr
    found = pq.read_table(tmp_path / "dedup.parquet").select(["prompt", "keep"]).to_pylist()
    assert [(row["prompt"], row["keep"]) for row in found] == [
        ("A smiling doctor.", True),
        ("a smiling doctor", False),  # the same prompt once normalised
        ("a red fox at dawn", True),
    ]
    table = tmp_path / "rows.jsonl"
    table.write_text(
        "".join(json.dumps({"record_id": f"r{i}", "prompt": f"prompt {i}", "cluster_id": i}) + "\n" for i in range(20)),
        encoding="utf-8",
    )
    written = run(
        [
            livo,
            "shards",
            "write",
            table,
            "-o",
            tmp_path / "shards",
            "--group-key",
            "cluster_id",
            "--record-id",
            "record_id",
        ],
        env=environ,
    )
    assert written.returncode == 0, written.stderr
    verified = run([livo, "shards", "verify", tmp_path / "shards"], env=environ)
    assert verified.returncode == 0, verified.stdout + verified.stderr


@pytest.mark.timeout(1200)
def test_a_command_without_its_extra_names_the_extra_to_install(light_core, tmp_path):
    livo = light_core / "bin" / "livo"
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = run(
        [
            livo,
            "values",
            "select",
            "--index",
            tmp_path,
            "--input",
            tmp_path / "p.txt",
            "--output",
            tmp_path / "out.parquet",
        ],
        env=environ,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("livo values: error: this command needs livo[values] ("), done.stderr
    assert "pip install 'livo[values]'" in lines[0]
