"""``livo demo --quick`` end to end, as the docs give it, with tiny sizes: every stage runs for real
(Rust dedup, MiniLM + FAISS, the Ray build on the session's local Ray, two DeepSpeed training
subprocesses, the evaluation), the report renders, and a second run skips every stage."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import time
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest

from livo.cli import main
from livo.demo import load_demo_config, run_pipeline

REPO = Path(__file__).resolve().parents[1]

TINY = {  # dotted overrides, as `livo demo --set` gives them
    "threads": 1,
    "prompts.count": 200,
    "build.set": {
        "generation.samples_per_prompt": 1,
        "generation.value_samples": {"colour_equality": 2},
        "generation.steps": 2,
        "generation.actors": 1,
        "progress": False,
    },
    **{
        f"train.{method}.{key}": value
        for method, settings in {
            "livo": {"max_steps": 2, "checkpoint_every": 2, "micro_batch_size": 4, "progress": False},
            "dpo": {"max_steps": 1, "checkpoint_every": 1, "micro_batch_size": 4, "progress": False},
        }.items()
        for key, value in settings.items()
    },
    "eval.set": {
        "per_prompt": 5,
        "steps": 2,
        "prompts": {"per_category": {"bias": 1, "explicit": 1, "harm": 1, "benign": 1, "double": 1}},
    },
}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, ray_local, torch_one_thread):
    output = tmp_path_factory.mktemp("demo") / "out"
    settings = [item for key, value in TINY.items() for item in ("--set", f"{key}={json.dumps(value)}")]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["demo", "--quick", "--output", str(output), *settings]) == 0
    config = load_demo_config(quick=True, overrides={**TINY, "output": str(output)})
    summary = json.loads((output / "demo.json").read_text())
    return config, summary, printed.getvalue().splitlines()


def test_every_stage_runs_and_leaves_its_output(demo_run) -> None:
    _, summary, lines = demo_run
    folder = Path(summary["output"])
    assert list(summary["stage_seconds"]) == ["dedup", "index", "build", "train-livo", "train-dpo", "eval"]
    assert [line for line in lines if line.startswith("[")] == [
        f"[{i}/6] " + title
        for i, title in enumerate(
            [
                "prompts + near-duplicate removal (Rust)",
                "value index (MiniLM + FAISS)",
                "dataset construction on a local Ray (generate pairs, judge, shard)",
                "DeepSpeed training of the LiVO value encoder",
                "DeepSpeed training of the Diffusion-DPO baseline (same pairs)",
                "evaluation with baselines + report",
            ],
            start=1,
        )
    ]
    assert (folder / "index").is_dir()
    manifest = json.loads((folder / "dataset" / "manifest.json").read_text())
    assert manifest["shards"]
    assert (folder / "runs" / "livo" / "value_encoder" / "config.json").is_file()
    assert (folder / "runs" / "dpo" / "unet_lora").is_dir()
    assert f"report: {summary['report']}" in lines[-1]


def test_report_has_every_method_and_renders(demo_run) -> None:
    from PIL import Image

    _, summary, _ = demo_run
    page = Path(summary["report"])
    record = json.loads((page.parent / "results.json").read_text())
    names = [m["name"] for m in record["methods"]]
    assert names == [
        "base",
        "negative prompt",
        "safe latent diffusion",
        "LiVO (keyword selector)",
        "LiVO (FAISS selector)",
        "LiVO without 0.5 mixing",
        "LiVO two values per prompt",
        "Diffusion-DPO",
    ]
    livo = next(m for m in record["config"]["methods"] if m["name"] == "LiVO (FAISS selector)")
    assert livo["value_encoder"] == str(Path(summary["output"]) / "runs" / "livo")
    faiss_row = record["methods"][names.index("LiVO (FAISS selector)")]
    # every evaluated prompt is about a held-out subject, and no training prompt is
    from livo.data.io import read_table
    from livo.toyworld.grammar import parse_prompt

    held = {"hero", "thief", "tree", "bowl"}
    assert {parse_prompt(p["prompt"]).subject for p in faiss_row["prompts"]} <= held
    trained_on = read_table(Path(summary["output"]) / "prompts.dedup.parquet").column("prompt").to_pylist()
    assert trained_on and not {parse_prompt(p).subject for p in trained_on} & held
    harmful = next(p["prompt"] for p in faiss_row["prompts"] if p["category"] == "harm")
    assert {p["category"]: p["value"] for p in faiss_row["prompts"]} == {
        "bias": "balance colour",
        "explicit": None,
        "harm": "no blood" if "bloody" in harmful else "no zombie",
        "benign": None,
        "double": "no blood",  # "a bloody hero": one value per prompt applies the first
    }
    two_values = record["methods"][names.index("LiVO two values per prompt")]
    assert [(p["category"], p["value"]) for p in two_values["prompts"]] == [("double", "no blood + balance colour")]
    assert two_values["summary"]["d1_double"] is not None and two_values["summary"]["avg_r_double"] is not None
    for method in record["methods"]:
        if method["name"] != "LiVO two values per prompt":
            assert method["summary"]["avg_r"] is not None and method["summary"]["fidelity_harm"] is not None

    class Images(HTMLParser):
        sources: list[str] = []

        def handle_starttag(self, tag, attrs) -> None:
            if tag == "img":
                self.sources.append(dict(attrs)["src"])

    parser = Images()
    parser.feed(page.read_text())
    assert len(parser.sources) == len(list((page.parent / "grids").glob("*.png"))) == 5
    for grid in (page.parent / "grids").glob("*.png"):
        with Image.open(grid) as image:
            assert image.height >= 7 * 16  # one row per method


def test_a_second_run_skips_every_stage(demo_run) -> None:
    config, summary, _ = demo_run
    lines: list[str] = []
    again = run_pipeline(config, echo=lines.append)
    assert sum("up to date" in line for line in lines) == 6
    assert again["report"] == summary["report"]
    assert "| LiVO (FAISS selector) |" in lines[-1]


def test_a_stage_continues_an_interrupted_run_and_starts_again_when_its_settings_change(tmp_path) -> None:
    """A changed LiVO setting used to rerun the training stage with --resume into the old run folder:
    the trainer found its checkpoint at max_steps, trained nothing and exported the old weights (a
    changed build likewise kept the old records). Only an interrupted run with the same settings may
    continue what it wrote."""
    from livo.demo import Stages

    output, work = tmp_path / "out", tmp_path / "out" / "work"
    found: list[list[str] | None] = []
    lines: list[str] = []

    def stage(settings: dict, fresh: bool = False, interrupt: bool = False) -> None:
        def action() -> None:
            found.append(sorted(p.name for p in work.iterdir()) if work.exists() else None)
            work.mkdir(parents=True, exist_ok=True)
            (work / f"part{len(found)}").write_text("written")
            if interrupt:
                raise RuntimeError("interrupted")

        Stages(output, 1, fresh, lines.append).run("train", "training", settings, action, (work,), clean=(work,))

    with pytest.raises(RuntimeError, match="interrupted"):
        stage({"learning_rate": 1}, interrupt=True)
    stage({"learning_rate": 1})
    assert found[-1] == ["part1"] and "continuing the interrupted run" in lines[-2]
    stage({"learning_rate": 1})
    assert len(found) == 2 and "up to date" in lines[-1]
    stage({"learning_rate": 2})
    assert found[-1] is None and "settings changed" in lines[-2]
    stage({"learning_rate": 2}, fresh=True)
    assert found[-1] is None and len(found) == 4


def test_a_nested_build_setting_keeps_the_other_fields_of_its_section(tmp_path) -> None:
    """`--set build.set.generation.model=X` arrives as {"generation": {"model": X}}; it replaced the
    whole generation section (the demo's 16 samples a prompt and 96 colour samples fell back to the
    config's 36 and 180). It sets the one field now; a dotted key's mapping is still a whole value."""
    from livo.demo import build_config_for, load_demo_config

    config = load_demo_config(None, False, {"build.set.generation.model": "builtin:toyworld", "output": str(tmp_path)})
    build = build_config_for(config, tmp_path / "p.parquet", tmp_path / "index", tmp_path / "dataset")
    assert build.generation.model == "builtin:toyworld"
    assert (build.generation.samples_per_prompt, build.generation.value_samples) == (16, {"colour_equality": 96})
    assert (build.generation.steps, build.selection.max_values_per_prompt) == (8, 2)


def test_a_stage_never_run_leaves_a_users_folder_and_a_skipped_stage_keeps_its_seconds(tmp_path) -> None:
    """A first run removed a stage's output paths whatever they held (a user's ``dataset/``); a
    skipped stage reported 0 s in demo.json; a missing output was called a change of settings."""
    from livo.demo import Stages

    output, work = tmp_path / "out", tmp_path / "out" / "dataset"
    work.mkdir(parents=True)
    (work / "mine.txt").write_text("the user's")
    lines: list[str] = []

    def stage() -> Stages:
        stages = Stages(output, 1, False, lines.append)

        def make() -> None:
            time.sleep(0.2)  # a skipped stage used to report 0 s: the run that made it must take longer
            work.mkdir(exist_ok=True)
            (work / "made").write_text("x")

        stages.run("build", "build", {"a": 1}, make, (work / "made",), (work,))
        return stages

    stage()
    assert (work / "mine.txt").is_file() and (work / "made").is_file()
    again = stage()
    assert again.skipped == ["build"] and again.seconds["build"] >= 0.2
    assert again.seconds["build"] == json.loads((output / ".stages" / "build.json").read_text())["seconds"]
    (work / "made").unlink()
    stage()
    assert "an output is missing: starting this stage again" in lines[-2]


def test_a_stage_that_ran_again_makes_the_stages_that_need_it_run_again(tmp_path) -> None:
    """A build rerun because its dataset was deleted left the training "up to date": its weights
    came from the dataset the rerun replaced. A stage's digest holds the runs of the stages it needs,
    so the training reruns, also when the run that rebuilt the dataset was stopped before it."""
    from livo.demo import Stages

    output = tmp_path / "out"
    dataset, weights = output / "dataset", output / "weights"
    ran: list[str] = []
    lines: list[str] = []

    def make(path: Path, name: str) -> Callable[[], None]:
        def action() -> None:
            ran.append(name)
            path.mkdir(parents=True, exist_ok=True)
            (path / "made").write_text(name)

        return action

    def demo(stop_after_build: bool = False) -> None:
        stages = Stages(output, 2, False, lines.append)
        stages.run("build", "build", {"a": 1}, make(dataset, "build"), (dataset / "made",), (dataset,))
        if not stop_after_build:
            stages.run("train", "train", {"b": 1}, make(weights, "train"), (weights / "made",), (weights,), ("build",))

    demo()
    demo()
    assert ran == ["build", "train"] and sum("up to date" in line for line in lines) == 2
    shutil.rmtree(dataset)
    demo(stop_after_build=True)  # the dataset is made again, then the run is stopped
    assert ran[-1] == "build"
    demo()
    assert ran == ["build", "train", "build", "train"]
    assert "an earlier stage ran again: starting this stage again" in lines[-2]
    demo()
    assert len(ran) == 4 and "up to date" in lines[-1]


def test_editing_the_registry_or_the_build_config_file_reruns_their_stages(tmp_path, monkeypatch) -> None:
    """The index and build stages were skipped as up to date after their files changed: their
    digests held the files' names only. A --config file's relative registry is its folder's."""
    import yaml

    from livo.demo import DEMO_CONFIG, build_config_for, index_and_build_settings, load_demo_config

    folder = tmp_path / "cfg"
    folder.mkdir()
    registry = (REPO / "python" / "livo" / "toyworld" / "registry.yaml").read_text()
    (folder / "reg.yaml").write_text(registry)
    build_file = REPO / "python" / "livo" / "dataset" / "configs" / "toyworld.yaml"
    (folder / "build.yaml").write_text(build_file.read_text())
    data = yaml.safe_load(DEMO_CONFIG.read_text())
    data["index"]["registry"] = "reg.yaml"
    data["build"]["config"] = "build.yaml"
    (folder / "demo.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.chdir(tmp_path)  # not the config's folder

    def settings() -> tuple[list, list]:
        config = load_demo_config(folder / "demo.yaml", True, {"output": str(tmp_path / "out")})
        assert config["index"]["registry"] == str(folder / "reg.yaml")
        build = build_config_for(config, tmp_path / "p.parquet", tmp_path / "index", tmp_path / "dataset")
        return index_and_build_settings(config, build)

    index, build = settings()
    (folder / "build.yaml").write_text(build_file.read_text().replace("guidance_scale: 5.0", "guidance_scale: 9.0"))
    assert settings()[0] == index and settings()[1] != build
    (folder / "reg.yaml").write_text(registry + "\n# edited\n")
    assert settings()[0] != index
