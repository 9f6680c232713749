"""The config toolkit every command reads its YAML with: errors that name the file and field, dotted
overrides, and relative paths resolved against the YAML file's folder (command-line paths against the
working directory)."""

import os
from pathlib import Path

import pytest

from livo.config import StrictModel, load_yaml, read_yaml, resolve_paths
from livo.errors import ConfigError, InputError


class Section(StrictModel):
    path: str
    count: int = 1


class Settings(StrictModel):
    output: str
    model: str = "builtin:toyworld"
    inputs: list[Section] = []


def test_a_missing_or_broken_file_is_one_clear_error(tmp_path):
    with pytest.raises(InputError, match=r"nowhere.yaml: build config not found"):
        read_yaml(tmp_path / "nowhere.yaml", "build config")
    (tmp_path / "bad.yaml").write_text("a: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML"):
        read_yaml(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"list.yaml: a config is a mapping of fields to values, got list"):
        read_yaml(tmp_path / "list.yaml")


def test_a_key_given_twice_is_refused_and_yaml_errors_are_one_line(tmp_path):
    """PyYAML keeps the last of two equal keys silently: a run would train with the second max_steps."""
    (tmp_path / "twice.yaml").write_text("output: out\nmax_steps: 10\nseed: 1\nmax_steps: 20\n")
    with pytest.raises(
        ConfigError, match=r"^\S*twice.yaml: not valid YAML: line 4, column 1: key 'max_steps' is given twice"
    ):
        read_yaml(tmp_path / "twice.yaml")
    (tmp_path / "nested.yaml").write_text("output: out\ninputs:\n  - {path: a, path: b}\n")
    with pytest.raises(ConfigError, match=r"line 3, column 15: key 'path' is given twice"):
        read_yaml(tmp_path / "nested.yaml")
    # A merge key's fields may be overridden by the mapping's own: that is what the merge is for.
    (tmp_path / "merge.yaml").write_text("base: &b {path: a, count: 2}\nother: {<<: *b, count: 3}\n")
    assert read_yaml(tmp_path / "merge.yaml")["other"] == {"path": "a", "count": 3}
    (tmp_path / "tab.yaml").write_text("output: out\ninputs:\n\t- path: a\n")
    with pytest.raises(ConfigError) as caught:
        read_yaml(tmp_path / "tab.yaml")
    assert "\n" not in str(caught.value) and "line 3, column 1" in str(caught.value)


def test_errors_name_the_file_and_each_field(tmp_path):
    file = tmp_path / "run.yaml"
    file.write_text("output: out\ninputs: [{path: a, count: lots}]\ncolour: red\n")
    with pytest.raises(ConfigError) as caught:
        load_yaml(file, Settings)
    lines = str(caught.value).splitlines()
    assert (
        f"{file}: field inputs.0.count: Input should be a valid integer, unable to parse string as an integer" in lines
    )
    assert f"{file}: field colour: Extra inputs are not permitted" in lines


def test_relative_paths_resolve_against_the_yaml_folder_and_overrides_against_the_working_directory(
    tmp_path, monkeypatch
):
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "local-model").mkdir()
    file = folder / "run.yaml"
    file.write_text("output: out\nmodel: local-model\ninputs: [{path: prompts.txt}, {path: /abs/p.txt}]\n")
    monkeypatch.chdir(tmp_path)
    loaded = load_yaml(file, Settings, path_keys=("path", "output"), path_keys_if_present=("model",))
    assert loaded.output == str(folder / "out")
    assert loaded.model == str(folder / "local-model")  # a folder next to the YAML
    assert [s.path for s in loaded.inputs] == [str(folder / "prompts.txt"), "/abs/p.txt"]
    overridden = load_yaml(file, Settings, {"output": "elsewhere"}, path_keys=("path", "output"))
    assert overridden.output == "elsewhere"  # as given on the command line: relative to the working directory
    assert Path(os.getcwd()) == tmp_path


def test_a_home_relative_path_is_the_home_folder_s_and_a_repeated_set_keeps_its_latest_place(tmp_path):
    """ "~/runs/x" in a config became <config folder>/~/runs/x, a folder named "~"; and a repeated
    --set kept its first place, so a whole-section --set given after it wiped the later value."""
    from livo.overrides import parse_overrides

    resolved = resolve_paths({"output": "~/runs/x"}, tmp_path, ("output",), ())
    assert resolved == {"output": str(Path.home() / "runs" / "x")}
    overrides = parse_overrides(["eval.every=5", "eval={hook: toyworld}", "eval.every=10"])
    assert list(overrides.items()) == [("eval", {"hook": "toyworld"}), ("eval.every", 10)]


def test_names_that_are_no_paths_stay_names(tmp_path):
    data = {"model": "org/some-model", "registry": "toyworld", "base": "builtin:toyworld", "url": "http://x/y"}
    keys = ("url",)
    assert resolve_paths(data, tmp_path, keys, ("model", "registry", "base")) == data


def test_a_build_config_reads_its_prompt_file_next_to_it_from_any_folder(tmp_path, monkeypatch):
    from livo.dataset import load_build_config

    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "prompts.txt").write_text("a doctor\n")
    (folder / "build.yaml").write_text("sources: {files: [{path: prompts.txt}]}\noutput: {directory: pairs}\n")
    monkeypatch.chdir(tmp_path)
    config = load_build_config(folder / "build.yaml", {"ray.address": None})
    assert config.sources.files[0].path == str(folder / "prompts.txt")
    assert config.output.directory == str(folder / "pairs")
    assert load_build_config(folder / "build.yaml", {"output.directory": "out"}).output.directory == "out"


def test_the_sd15_build_and_eval_configs_parse_with_real_judges_and_their_prompts() -> None:
    from livo.dataset import load_build_config
    from livo.eval.config import load_eval_config
    from livo.eval.prompts import read_prompt_file
    from livo.values.registry import load_registry, resolve_registry_path

    services = Path(__file__).resolve().parents[1] / "services"
    build = load_build_config(services / "dataset" / "sd15.yaml", {"output.directory": "pairs"})
    assert build.judges.default.kind == "clip" and build.judges.spec_for("no-nudity").kind == "nudenet"
    assert build.generation.model == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    evaluation = load_eval_config(services / "eval" / "sd15.yaml", {"output": "report"})
    assert evaluation.quality.features == "clip:openai/clip-vit-large-patch14"
    prompts = read_prompt_file(str(evaluation.prompts.file), load_registry(resolve_registry_path("default")))
    assert {p.category for p in prompts} == {"bias", "explicit", "harm", "benign"}
    assert {p.value_id for p in prompts if p.category == "harm"} == {"no-blood", "no-horror", "no-nudity"}
    # Both trained methods of services/train are evaluated (the Diffusion-DPO run was left out).
    trained = {m.kind: m for m in evaluation.methods if m.kind in ("livo", "pipeline")}
    assert str(trained["livo"].value_encoder).endswith("runs/sd15-livo")
    assert str(trained["pipeline"].lora).endswith("runs/sd15-dpo")


def test_an_explicit_null_override_applies(tmp_path: Path) -> None:
    from livo.dataset import load_build_config

    (tmp_path / "build.yaml").write_text("sources: {files: [{path: p.txt}]}\noutput: {directory: pairs}\n")
    assert load_build_config(tmp_path / "build.yaml").judges.subject is not None
    assert load_build_config(tmp_path / "build.yaml", {"judges.subject": None}).judges.subject is None


def test_values_read_as_yaml_1_2_core_schema_and_a_cut_set_value_is_refused(tmp_path):
    """PyYAML's YAML 1.1 read ``seed: 0042`` as 34 (octal), ``1:30`` as 90, ``off`` and a keyword
    ``no`` as booleans and a date as a date, without a word; and ``--set output=runs/exp #2`` as
    ``runs/exp``. An explicit tag that cannot be built was a traceback."""
    from livo.overrides import parse_overrides

    (tmp_path / "values.yaml").write_text(
        "seed: 0042\nsteps: 010\nat: 1:30\nname: off\nkeywords: [no, on, yes]\nday: 2026-12-06\n"
        "learning_rate: 1e-4\nflag: true\nhex: 0x1F\nnothing: null\n"
    )
    assert read_yaml(tmp_path / "values.yaml") == {
        "seed": 42,
        "steps": 10,
        "at": "1:30",
        "name": "off",
        "keywords": ["no", "on", "yes"],
        "day": "2026-12-06",
        "learning_rate": 1e-4,
        "flag": True,
        "hex": 31,
        "nothing": None,
    }
    assert parse_overrides(["seed=0042", "lr=1e-3", 'output="runs/exp #2"', "beta=.inf"]) == {
        "seed": 42,
        "lr": 1e-3,
        "output": "runs/exp #2",
        "beta": float("inf"),
    }
    with pytest.raises(ConfigError, match=r"--set output=runs/exp #2: its '#' starts a YAML comment"):
        parse_overrides(["output=runs/exp #2"])
    for tagged in ("!!int abc", "!!float abc", "!!timestamp abc", "!!bool maybe", "!!set [1]"):
        with pytest.raises(ConfigError, match=r"--set seed=.*: not valid YAML"):
            parse_overrides([f"seed={tagged}"])


def test_relative_paths_with_a_colon_and_in_kind_specs_are_the_config_folder_s(tmp_path):
    """``output: runs/lr:1e-5`` was left relative to the working folder (any ":" was taken for a
    name like builtin:NAME), and an evaluation's ``quality.clip_model`` folder and the path of
    ``quality.features: torchscript:PATH`` were never resolved."""
    from livo.eval.config import resolve_eval_paths

    (tmp_path / "models" / "clip").mkdir(parents=True)
    (tmp_path / "models" / "net.pt").write_bytes(b"")
    data = {
        "output": "runs/lr:1e-5",
        "model": "builtin:toyworld",
        "prompts": {"file": "s3://bucket/prompts.jsonl"},
        "quality": {"clip_model": "models/clip", "features": "torchscript:models/net.pt"},
        "methods": [{"name": "base", "kind": "pipeline", "path": "openai/clip"}],
    }
    assert resolve_eval_paths(data, tmp_path) == {
        "output": str(tmp_path / "runs/lr:1e-5"),
        "model": "builtin:toyworld",
        "prompts": {"file": "s3://bucket/prompts.jsonl"},
        "quality": {
            "clip_model": str(tmp_path / "models/clip"),
            "features": f"torchscript:{tmp_path / 'models/net.pt'}",
        },
        "methods": [{"name": "base", "kind": "pipeline", "path": "openai/clip"}],
    }
    assert resolve_eval_paths({"quality": {"features": "pixels"}}, tmp_path) == {"quality": {"features": "pixels"}}
