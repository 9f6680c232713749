"""Bad inputs stop a build before any generation, with a message naming the problem; the stage
helpers (record ids, seeds, class choice, pair decisions) behave as documented."""

import json
import subprocess
import sys
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from livo.dataset import build_dataset, load_build_config, parse_build_config, record_id, seed_of
from livo.dataset.judging import decide_pair
from livo.dataset.rewrite import class_not_shown
from livo.errors import ConfigError, InputError
from livo.judges import ImageVerdict
from livo.values.registry import builtin_registry_path, load_registry

TOY = load_registry(builtin_registry_path("toyworld"))
DEFAULT = load_registry(builtin_registry_path("default"))


def file_config(tmp_path, source, **extra):
    data = {
        "sources": {"files": [source]},
        "selection": {"registry": "toyworld"},
        "output": {"directory": str(tmp_path / "out")},
        "progress": False,
    }
    data.update(extra)
    return parse_build_config(data)


def assert_nothing_generated(tmp_path):
    assert not (tmp_path / "out").exists()


def test_a_build_resumes_only_with_the_settings_and_registry_it_was_made_with(tmp_path):
    """Editing the registry (its rewrite words, value texts or classes) keeps every record id, so a
    resumed build mixed records of both versions; it is refused like other generation settings."""
    from livo.dataset.job import check_output_state, write_state

    registry = tmp_path / "registry.yaml"
    registry.write_text(builtin_registry_path("toyworld").read_text())
    source = {"path": str(tmp_path / "prompts.txt")}
    first = file_config(tmp_path, source, selection={"registry": str(registry)})
    write_state(first)
    check_output_state(file_config(tmp_path, source, selection={"registry": str(registry)}))
    with pytest.raises(ConfigError, match="was built with other generation settings"):
        check_output_state(
            file_config(tmp_path, source, selection={"registry": str(registry)}, generation={"steps": 3})
        )
    registry.write_text(registry.read_text().replace("balance colour", "balance the colours"))
    with pytest.raises(ConfigError, match="was built with other generation settings"):
        check_output_state(file_config(tmp_path, source, selection={"registry": str(registry)}))


def test_a_build_writes_only_into_an_empty_folder_or_one_it_began(tmp_path):
    """A folder holding a user's files (or a pair dataset another command wrote) was taken for a new
    build: shards, a lock and the state were written among them."""
    from livo.dataset.job import check_output_state

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "readme.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"out: exists, is not empty and holds no build \(no build/config.json\)"):
        check_output_state(file_config(tmp_path, {"path": str(tmp_path / "prompts.txt")}), ["a doctor"])


def test_a_build_resumes_only_from_the_same_sources_in_the_same_order(tmp_path):
    """A record's cluster_id (its split key) is its representative's row in the sources: other or
    reordered sources gave the same record another cluster and split on resume, unchecked."""
    from livo.dataset.job import check_output_state, write_state

    config = file_config(tmp_path, {"path": str(tmp_path / "prompts.txt")})
    write_state(config, ["a doctor", "a nurse"])
    check_output_state(config, ["a doctor", "a nurse"])
    for other in (["a nurse", "a doctor"], ["a doctor", "a nurse", "a thief"]):
        with pytest.raises(ConfigError, match="was built from other sources"):
            check_output_state(config, other)


def test_a_build_resumes_only_making_images_the_way_it_began(tmp_path):
    """dtype auto is float16 on a GPU and float32 on a CPU: a build moved between them resumed with
    images of both kinds. Where images are made is recorded with the first batch and checked."""
    from livo.dataset.job import check_image_kind, check_output_state, write_state

    config = file_config(tmp_path, {"path": str(tmp_path / "prompts.txt")})
    write_state(config, ["a doctor"])
    assert check_image_kind(config, "cpu") == {"device": "cpu", "dtype": "float32"}
    write_state(config, ["a doctor"])  # a rerun writes the state again: the image kind stays
    assert check_image_kind(config, "cpu") == {"device": "cpu", "dtype": "float32"}
    with pytest.raises(ConfigError, match="made on cpu in float32; this run would make them on cuda in float16"):
        check_image_kind(config, "cuda")
    pinned = file_config(tmp_path, {"path": str(tmp_path / "prompts.txt")}, generation={"dtype": "float32"})
    with pytest.raises(ConfigError, match="made on cpu in float32; this run would make them on cuda in float32"):
        check_image_kind(pinned, "cuda")
    state = tmp_path / "out" / "build" / "config.json"
    state.write_text(state.read_text()[:40])
    with pytest.raises(ConfigError, match="config.json is not readable JSON"):
        check_output_state(config, ["a doctor"])


def test_an_empty_prompt_file_fails_before_generation(tmp_path):
    (tmp_path / "prompts.txt").write_text("")
    with pytest.raises(InputError, match=r"prompts.txt: the file is empty"):
        build_dataset(file_config(tmp_path, {"path": str(tmp_path / "prompts.txt")}))
    assert_nothing_generated(tmp_path)


def test_a_missing_column_fails_naming_the_column(tmp_path):
    pq.write_table(pa.table({"text": ["a doctor"], "id": [1]}), tmp_path / "prompts.parquet")
    with pytest.raises(InputError, match=r"prompts.parquet: no column 'caption'"):
        build_dataset(file_config(tmp_path, {"path": str(tmp_path / "prompts.parquet"), "column": "caption"}))
    (tmp_path / "blank.jsonl").write_text(json.dumps({"prompt": "  "}) + "\n")
    with pytest.raises(InputError, match="blank.jsonl: no non-empty prompts"):
        build_dataset(file_config(tmp_path, {"path": str(tmp_path / "blank.jsonl")}))
    assert_nothing_generated(tmp_path)


def test_null_and_blank_rows_of_a_prompt_file_are_skipped_and_counted(tmp_path):
    from livo.dataset.config import SourcesConfig
    from livo.dataset.plan import read_sources

    rows = ["a doctor", None, "  ", "a kite", ""]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps({"prompt": r}) + "\n" for r in rows))
    (tmp_path / "q.txt").write_text("a nurse\n")
    sources = SourcesConfig(files=[{"path": str(tmp_path / "p.jsonl")}, {"path": str(tmp_path / "q.txt")}])
    prompts, counts = read_sources(sources)
    assert prompts == ["a doctor", "a kite", "a nurse"]
    assert counts == {str(tmp_path / "p.jsonl"): 2, str(tmp_path / "q.txt"): 1, "skipped_empty": 3}
    assert "skipped_empty" not in read_sources(SourcesConfig(files=[{"path": str(tmp_path / "q.txt")}]))[1]


def test_a_prompt_file_that_is_not_utf8_is_named_as_a_source(tmp_path):
    import gzip

    from livo.dataset.config import SourcesConfig
    from livo.dataset.plan import read_sources

    broken = b"a doctor\nbroken \xc3\x28\n"
    (tmp_path / "plain.txt").write_bytes(broken)
    (tmp_path / "packed.txt.gz").write_bytes(gzip.compress(broken))
    for path in (tmp_path / "plain.txt", tmp_path / "packed.txt.gz"):
        with pytest.raises(InputError, match=f"^sources.files: {path}: line 2 is not valid UTF-8"):
            read_sources(SourcesConfig(files=[{"path": str(path)}]))


def test_a_missing_file_and_an_unknown_value_id_are_named(tmp_path):
    with pytest.raises(InputError, match="nowhere.csv: no such file"):
        build_dataset(file_config(tmp_path, {"path": str(tmp_path / "nowhere.csv")}))
    (tmp_path / "p.txt").write_text("a doctor\n")
    with pytest.raises(ConfigError, match=r"generation.value_samples: unknown value id\(s\) 'no_gore'"):
        build_dataset(
            file_config(tmp_path, {"path": str(tmp_path / "p.txt")}, generation={"value_samples": {"no_gore": 3}})
        )
    with pytest.raises(ConfigError, match=r"selection.values: unknown value id\(s\) 'gender-equality'"):
        build_dataset(
            file_config(
                tmp_path,
                {"path": str(tmp_path / "p.txt")},
                selection={"registry": "toyworld", "values": ["gender-equality"]},
            )
        )
    assert_nothing_generated(tmp_path)


def test_invalid_configs_name_the_field(tmp_path):
    bad = tmp_path / "build.yaml"
    bad.write_text(
        "sources: {generators: {toyworld: {count: 10}}}\noutput: {directory: out}\ngeneration: {steps: 0, batchsize: 4}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_build_config(bad)
    message = str(caught.value)
    assert "build.yaml: field generation.steps: Input should be greater than or equal to 1" in message
    assert "field generation.batchsize: Extra inputs are not permitted" in message
    with pytest.raises(ConfigError, match="field sources: Value error, give at least one prompt source"):
        parse_build_config({"sources": {}, "output": {"directory": "x"}})
    with pytest.raises(ConfigError, match="a clip judge needs 'model'"):
        parse_build_config(
            {
                "sources": {"generators": {"toyworld": {}}},
                "output": {"directory": "x"},
                "judges": {"default": {"kind": "clip"}},
            }
        )


def test_a_judge_that_cannot_decide_a_value_is_refused(tmp_path):
    (tmp_path / "p.txt").write_text("a doctor\n")
    config = file_config(
        tmp_path,
        {"path": str(tmp_path / "p.txt")},
        selection={"registry": "default"},
        judges={"default": {"kind": "toyworld"}},
    )
    with pytest.raises(ConfigError, match="value 'gender-equality': judge 'toyworld' cannot decide it"):
        build_dataset(config)
    assert_nothing_generated(tmp_path)


def test_a_model_that_does_not_load_is_refused(tmp_path):
    (tmp_path / "p.txt").write_text("a doctor\n")
    config = file_config(tmp_path, {"path": str(tmp_path / "p.txt")}, generation={"model": str(tmp_path / "nomodel")})
    with pytest.raises(InputError, match="nomodel: does not exist"):
        build_dataset(config)
    assert_nothing_generated(tmp_path)


def test_the_cli_reports_bad_input_with_status_2(tmp_path):
    (tmp_path / "prompts.csv").write_text("")
    (tmp_path / "build.yaml").write_text(
        f"sources: {{files: [{{path: {tmp_path / 'prompts.csv'}}}]}}\noutput: {{directory: {tmp_path / 'out'}}}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "livo.cli", "build-dataset", str(tmp_path / "build.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert (
        "livo build-dataset: error: sources.files:" in done.stderr and "prompts.csv: the file is empty" in done.stderr
    )
    assert_nothing_generated(tmp_path)


def test_record_ids_and_seeds_are_stable_across_processes():
    ids = [record_id("a doctor", "colour_equality", k) for k in range(3)]
    assert len(set(ids)) == 3 and record_id("a doctor", "no_blood", 0) not in ids
    code = (
        "from livo.dataset import record_id, seed_of; r = record_id('a doctor', 'colour_equality', 1); "
        "print(r, seed_of(r))"
    )
    other = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONHASHSEED": "123", "PATH": ""},
    ).stdout.split()
    assert other == [ids[1], str(seed_of(ids[1]))]
    assert all(0 <= seed_of(i) < 2**63 for i in ids)


def test_the_aligned_class_is_one_the_violating_image_does_not_show():
    colour = TOY.value("colour_equality")
    for k in range(20):
        assert class_not_shown(colour, "orange", f"r{k}") == "teal"
        assert class_not_shown(colour, "teal", f"r{k}") == "orange"
    assert class_not_shown(colour, None, "r0") is None
    race = DEFAULT.value("racial-equality")
    picks = Counter(class_not_shown(race, "white", f"r{k}") for k in range(4000))
    assert set(picks) == {"black", "indian", "asian", "latino"}
    assert max(picks.values()) - min(picks.values()) < 200  # uniform over the other classes


@pytest.mark.parametrize(
    ("kind", "violating", "aligned", "subject", "reason"),
    [
        ("bias", ImageVerdict(attribute="orange"), ImageVerdict(attribute="teal"), True, None),
        ("bias", ImageVerdict(attribute=None), ImageVerdict(attribute="teal"), True, "violating_attribute_unreadable"),
        ("bias", ImageVerdict(attribute="orange"), ImageVerdict(attribute="orange"), True, "aligned_wrong_attribute"),
        ("bias", ImageVerdict(attribute="orange"), ImageVerdict(attribute="teal"), False, "aligned_lost_subject"),
        ("harm", ImageVerdict(harmful=True), ImageVerdict(harmful=False), None, None),
        ("harm", ImageVerdict(harmful=False), ImageVerdict(harmful=False), True, "violating_not_harmful"),
        ("harm", ImageVerdict(harmful=True), ImageVerdict(harmful=True), True, "aligned_still_harmful"),
    ],
)
def test_pair_decisions(kind, violating, aligned, subject, reason):
    value = TOY.value("colour_equality" if kind == "bias" else "no_blood")
    assert decide_pair(value, violating, aligned, "teal", subject) == reason


class EmphaticRewriter:
    """A stand-in for an LLM rewriter: any object with ``rewrite(prompt, value, class_name)``."""

    def rewrite(self, prompt, value, class_name):
        return f"{prompt} without {value.keywords[0]}" if value.kind == "harm" else f"{class_name} {prompt}"


def make_emphatic_rewriter(registry):
    return EmphaticRewriter()


def test_a_pluggable_rewriter_replaces_the_rules_and_bad_specs_are_named():
    from livo.dataset.rewrite import RuleRewriter, load_rewriter

    assert isinstance(load_rewriter("rules", TOY), RuleRewriter)
    assert load_rewriter("rules", TOY).rewrite("a bloody nurse", TOY.value("no_blood"), None) == "a nurse"
    plugged = load_rewriter(f"{__name__}:make_emphatic_rewriter", TOY)
    assert plugged.rewrite("a bloody nurse", TOY.value("no_blood"), None) == "a bloody nurse without bloody"
    with pytest.raises(ConfigError, match="use 'rules' or 'module:factory'"):
        load_rewriter("llm", TOY)
    with pytest.raises(ConfigError, match="cannot import it"):
        load_rewriter("no_such_module_x:factory", TOY)


def test_the_ray_job_joins_the_cluster_unless_an_address_is_given():
    """--address=HOST was not seen as an address: the job added --address auto, which won."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "services" / "dataset" / "job.py"
    spec = importlib.util.spec_from_file_location("dataset_job", path)
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    assert job.build_arguments(["c.yaml"], {}) == ["build-dataset", "c.yaml", "--address", "auto"]
    for given in (["--address", "10.0.0.1:6379"], ["--address=10.0.0.1:6379"]):
        assert job.build_arguments(["c.yaml", *given], {}) == ["build-dataset", "c.yaml", *given]
    environ = {"RAY_ADDRESS": "http://10.0.0.1:8265"}  # the job API's, which ray job submit passes on
    assert job.build_arguments(["c.yaml"], environ)[-2:] == ["--address", "auto"] and not environ


def test_a_model_folder_with_cut_weights_is_named_before_and_by_the_workers(tmp_path, ray_local):
    """The build's driver checks a model folder without loading it: a weights file cut short passed,
    and each worker then failed to load it, ending in Ray's traceback. The driver reads the files'
    headers now, and a worker's own loading error comes back as that one error."""
    import shutil

    from livo.dataset.execute import start_actors
    from livo.dataset.generate import WorkerSpec
    from livo.models.loading import resolve_model

    model = tmp_path / "model"
    shutil.copytree(resolve_model("builtin:toyworld"), model)
    weights = model / "unet" / "diffusion_pytorch_model.safetensors"
    with weights.open("r+b") as handle:
        handle.truncate(weights.stat().st_size // 2)
    (tmp_path / "p.txt").write_text("a doctor\n")
    config = file_config(tmp_path, {"path": str(tmp_path / "p.txt")}, generation={"model": str(model)})
    with pytest.raises(
        InputError, match=r"unet/diffusion_pytorch_model.safetensors cannot be read .*damaged or incomplete"
    ):
        build_dataset(config)
    assert_nothing_generated(tmp_path)
    spec = WorkerSpec(
        model=str(tmp_path / "nomodel"), registry=load_registry(builtin_registry_path("toyworld")), judges=None
    )
    with pytest.raises(InputError, match=r"nomodel: does not exist"):
        start_actors(spec, 1, cpus=0.5, gpus=0, max_restarts=0, max_task_retries=0)
