"""Every command answers an ordinary mistake with one line naming the flag or path, exit status 2,
before any heavy work: a wrong output path costs a second, not the minutes of generation before it."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from livo.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]
EVAL_CONFIG = str(REPO / "python" / "livo" / "eval" / "configs" / "toyworld.yaml")
TRAIN_CONFIG = str(REPO / "services" / "train" / "toyworld_livo.yaml")


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder with a file, a folder with something in it, a prompt file and links to nothing."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x\n")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "something.txt").write_text("x\n")
    (tmp_path / "prompts.txt").write_text("a doctor\na kite\n")
    (tmp_path / "out.jsonl").write_text("{}\n")
    (tmp_path / "dangling.jsonl").symlink_to("nowhere")
    (tmp_path / "dangling").symlink_to("nowhere")
    (tmp_path / "twice.csv").write_text("prompt,prompt\na doctor,a kite\n")
    (tmp_path / "blank.jsonl").write_text("")
    (tmp_path / "toy-step2").mkdir()
    (tmp_path / "toy-step2" / "notes.txt").write_text("x\n")
    return tmp_path


# (arguments, what the one line must say). Paths are relative to the workspace.
MISTAKES = {
    "dedup: --threads -1": (["dedup", "prompts.txt", "-o", "o.jsonl", "--threads", "-1"], "argument --threads"),
    "dedup: --threshold 2": (["dedup", "prompts.txt", "-o", "o.jsonl", "--threshold", "2"], "argument --threshold"),
    "dedup: output exists": (
        ["dedup", "prompts.txt", "-o", "out.jsonl"],
        "--output out.jsonl: exists; pass --overwrite",
    ),
    "dedup: output is a folder": (["dedup", "prompts.txt", "-o", "full"], "--output full: is a folder"),
    "dedup: input is a folder": (["dedup", "full", "-o", "o.jsonl"], "input full: is a folder"),
    "dedup: input missing": (["dedup", "nope.txt", "-o", "o.jsonl"], "input nope.txt: no such file"),
    "dedup: input format": (
        ["dedup", "afile", "-o", "o.jsonl"],
        "input afile: unsupported file extension '' (supported: .csv, .jsonl, .ndjson, .parquet, .txt; "
        "also .bz2, .gz, .zst after .csv, .jsonl, .ndjson, .txt)",
    ),
    "dedup: output format": (["dedup", "prompts.txt", "-o", "o.txt"], "unsupported file extension '.txt'"),
    "dedup: output under a file": (["dedup", "prompts.txt", "-o", "afile/o.jsonl"], "afile is a file"),
    "dedup: an empty output path": (["dedup", "prompts.txt", "-o", ""], "--output: empty; give a file or folder name"),
    # A link to nothing failed after the work (or was replaced by a file).
    "dedup: output is a broken link": (["dedup", "prompts.txt", "-o", "dangling.jsonl"], "a symbolic link to nowhere"),
    "values build-index: output is a broken link": (
        ["values", "build-index", "toyworld", "-o", "dangling"],
        "--output dangling: a symbolic link to nowhere, which does not exist",
    ),
    "shards write: output is a broken link": (["shards", "write", "prompts.txt", "-o", "dangling"], "a symbolic link"),
    "dedup: a CSV header names a column twice": (
        ["dedup", "twice.csv", "-o", "o.jsonl"],
        "twice.csv: cannot be read as csv: the header names column 'prompt' more than once",
    ),
    "shards write: an empty .jsonl": (
        ["shards", "write", "blank.jsonl", "-o", "ds"],
        "blank.jsonl: the file is empty (no rows to write)",
    ),
    # A flag of the distributed run without --ray was ignored.
    "dedup: a Ray flag without --ray": (
        ["dedup", "prompts.txt", "-o", "o.jsonl", "--num-cpus", "2", "--piece-size", "1M"],
        "--num-cpus, --piece-size: only used with --ray; add --ray, or leave them out",
    ),
    "shards write: output is a file": (["shards", "write", "prompts.txt", "-o", "afile"], "--output afile: is a file"),
    "shards write: output is not a dataset": (
        ["shards", "write", "prompts.txt", "-o", "full"],
        "holds no shard dataset",
    ),
    "shards write: input lacks the group key": (
        ["shards", "write", "prompts.txt", "-o", "ds"],
        "prompts.txt: no column 'cluster_id' (--group-key)",
    ),
    "shards stats: not a dataset": (["shards", "stats", "full"], "no manifest"),
    "shards stats: a file": (["shards", "stats", "afile"], "afile: a file; a shard dataset is a folder"),
    "shards verify: no such folder": (["shards", "verify", "nope"], "nope: no such folder"),
    "shards write: a split twice": (
        ["shards", "write", "prompts.txt", "-o", "ds", "--split", "train=0.5", "--split", "train=0.5"],
        "split 'train' is given twice",
    ),
    "shards write: metadata without a key": (
        ["shards", "write", "prompts.txt", "-o", "ds", "--metadata", "=x"],
        "--metadata '=x': expected KEY=VALUE",
    ),
    "values build-index: output is a file": (
        ["values", "build-index", "default", "-o", "afile"],
        "--output afile: is a file",
    ),
    "values build-index: output not empty": (
        ["values", "build-index", "default", "-o", "full"],
        "--output full: exists and is not empty; pass --overwrite",
    ),
    "values build-index: --labelled without --calibrate": (
        ["values", "build-index", "default", "-o", "idx", "--labelled", "prompts.txt"],
        "--labelled is read by --calibrate only",
    ),
    "values build-index: --split without --calibrate": (
        ["values", "build-index", "default", "-o", "idx", "--split", "test"],
        "--split is read by --calibrate only",
    ),
    "values build-index: calibrate a registry without its labels": (
        ["values", "build-index", "toyworld", "-o", "idx", "--calibrate"],
        "--calibrate: the shipped labelled prompts are for the default registry",
    ),
    "values select: no index": (
        ["values", "select", "--index", "nope", "--input", "prompts.txt", "--output", "s.jsonl"],
        "--index nope: no such folder",
    ),
    "values select: output exists": (
        ["values", "select", "--index", "full", "--input", "prompts.txt", "--output", "out.jsonl"],
        "--output out.jsonl: exists",
    ),
    "values select: no such column": (
        ["values", "select", "--index", "full", "--input", "prompts.txt", "--output", "s.jsonl", "--column", "x"],
        "no column 'x'",
    ),
    "values evaluate: no index": (["values", "evaluate", "--index", "nope"], "--index nope: no such folder"),
    "values calibrate: no index": (["values", "calibrate", "nope"], "index nope: no such folder"),
    "toyworld render: output is a folder": (
        ["toyworld", "render", "a doctor", "--output", "full"],
        "--output full: is a folder",
    ),
    "toyworld render: not a PNG": (["toyworld", "render", "a doctor", "--output", "x.jpg"], "(supported: .png)"),
    "toyworld train: output is a file": (["toyworld", "train", "--output", "afile"], "--output afile: is a file"),
    "toyworld train: output not empty": (["toyworld", "train", "--output", "full"], "pass --overwrite"),
    "toyworld report: output not empty": (["toyworld", "report", "--output", "full"], "pass --overwrite"),
    "toyworld report: no such model folder": (
        ["toyworld", "report", "--output", "r", "--model", "./nomodel"],
        "--model nomodel: no such folder",
    ),
    "toyworld report: model is a broken link": (
        ["toyworld", "report", "--output", "r", "--model", "dangling"],
        "base model dangling: a symbolic link to nowhere, which does not exist",
    ),
    "toyworld pairs: output is a file": (["toyworld", "pairs", "--output", "afile"], "--output afile: is a file"),
    "build-dataset: output is a file": (["build-dataset", "toyworld", "-o", "afile"], "--output afile: is a file"),
    "build-dataset: no output": (["build-dataset", "toyworld"], "give -o/--output on the command line"),
    "build-dataset: no such config": (["build-dataset", "nope.yaml", "-o", "x"], "config nope.yaml: no such file"),
    "train: output is a file": (
        ["train", TRAIN_CONFIG, "--output", "afile", "--dataset", "ds-ok"],
        "--output afile: is a file",
    ),
    "train: an earlier run without --resume": (
        ["train", TRAIN_CONFIG, "--output", "full", "--dataset", "ds-ok"],
        "--output full: holds an earlier run; pass --resume",
    ),
    "train: --max-steps 0": (["train", TRAIN_CONFIG, "--max-steps", "0"], "argument --max-steps"),
    "train: dataset is a file": (
        ["train", TRAIN_CONFIG, "--output", "r", "--dataset", "afile"],
        "dataset afile: a file; a pair dataset is a folder of shards with a manifest.json",
    ),
    "eval: output is a file": (["eval", EVAL_CONFIG, "--output", "afile"], "--output afile: is a file"),
    "eval: output not empty": (["eval", EVAL_CONFIG, "--output", "full"], "--output full: exists and is not empty"),
    # --set applies though --per-prompt is not given (a flag left out used to mask it)
    "eval: --set per_prompt below group_size": (
        ["eval", EVAL_CONFIG, "--output", "report", "--set", "per_prompt=3"],
        "per_prompt (3) must be >= group_size (5)",
    ),
    "train: --set max_steps=0": (["train", TRAIN_CONFIG, "--set", "max_steps=0"], "max_steps"),
    "train: --set a value that is not YAML": (
        ["train", TRAIN_CONFIG, "--set", "max_steps=["],
        "--set max_steps=[: not valid YAML: line 1, column 2",
    ),
    "eval: --set an empty part of a dotted key": (
        ["eval", EVAL_CONFIG, "--output", "report", "--set", "generation..steps=3"],
        "--set 'generation..steps=3': expected FIELD=VALUE",
    ),
    # A misspelled --set key is named as the override, not blamed on the file.
    "train: --set a misspelled field": (
        ["train", TRAIN_CONFIG, "--set", "lernrate=1"],
        "toyworld_livo.yaml: field lernrate: Extra inputs are not permitted (set by --set lernrate)",
    ),
    "eval: --set a misspelled section": (
        ["eval", EVAL_CONFIG, "--output", "report", "--set", "generaton.steps=3"],
        "field generaton: Extra inputs are not permitted (set by --set generaton.steps)",
    ),
    "build-dataset: --set a misspelled field": (
        ["build-dataset", "toyworld", "-o", "pairs", "--set", "judges.subjct=null"],
        "field judges.subjct: Extra inputs are not permitted (set by --set judges.subjct)",
    ),
    # The demo checks its training and evaluation settings before its first stage (the dataset build).
    "demo: --set a misspelled training field": (
        ["demo", "--output", "demo-out", "--set", "train.livo.sed=3"],
        "demo config train.livo: field sed: Extra inputs are not permitted",
    ),
    "demo: --set a misspelled build field": (
        ["demo", "--output", "demo-out", "--set", "build.set.generaton.steps=3"],
        "toyworld.yaml: field generaton: Extra inputs are not permitted (set by the demo's build.set.generaton.steps)",
    ),
    "demo: --set eval.config to a file that is no config": (
        ["demo", "--output", "demo-out", "--set", "eval.config=afile"],
        "afile: an evaluation config is a mapping of fields to values, got str",
    ),
    "demo: --set a Ray setting of the build": (
        ["demo", "--output", "demo-out", "--set", "build.set.ray.address=10.0.0.1:6379"],
        "build.set.ray.address: the demo builds on a local Ray",
    ),
    "demo: --set a misspelled evaluation field": (
        ["demo", "--output", "demo-out", "--set", "eval.set.generaton.steps=3"],
        "with the demo config's eval.set: field generaton: Extra inputs are not permitted",
    ),
    "eval: no output": (["eval", EVAL_CONFIG], "give --output on the command line"),
    # The hint sent the user to the config file, which does not hold the value.
    "eval: --set a flag's field": (
        ["eval", EVAL_CONFIG, "--output", "r", "--set", "per_prompt=0"],
        "field per_prompt: Input should be greater than or equal to 1 (set by --per-prompt or --set per_prompt)",
    ),
    # A MemoryError after the models loaded, or minutes of work and a broken process pool.
    "eval: --per-prompt beyond any run": (
        ["eval", EVAL_CONFIG, "--output", "report", "--per-prompt", "99999999999999"],
        "argument --per-prompt: must be at most 10000",
    ),
    "toyworld train: --learning-rate nan": (
        ["toyworld", "train", "--output", "m", "--learning-rate", "nan"],
        "argument --learning-rate: must be a number in (0, 1), got 'nan'",
    ),
    "toyworld train: --default-direction-weight inf (NaN weights, saved)": (
        ["toyworld", "train", "--output", "m", "--default-direction-weight", "inf"],
        "argument --default-direction-weight: must be a number >= 0, got 'inf'",
    ),
    # A checkpoint replaced full-step2 whole, the user's files with it.
    "toyworld train: a checkpoint onto a folder of other files": (
        ["toyworld", "train", "--output", "toy/", "--steps", "4", "--checkpoint-every", "2"],
        "checkpoint (--checkpoint-every) toy-step2: exists and is not empty; pass --overwrite",
    ),
    # A first run removed dataset/, runs/livo/ and report/ of any folder it was given.
    "demo: --output a folder of other files": (
        ["demo", "--quick", "--output", "full"],
        "--output full: holds files and is no demo folder (no .stages/)",
    ),
    "demo: an unknown dedup setting": (
        ["demo", "--quick", "--output", "d", "--set", "dedup.bogus=1"],
        "demo config dedup: DedupConfig.__init__() got an unexpected keyword argument 'bogus'",
    ),
    "demo: a dedup threshold out of range": (
        ["demo", "--quick", "--output", "d", "--set", "dedup.threshold=2"],
        "demo config dedup: invalid parameter threshold=2",
    ),
    # Read against the run's YAML in the output folder, after the dataset was built.
    "demo: a DeepSpeed config that is not there": (
        ["demo", "--quick", "--output", "d", "--set", "train.livo.deepspeed_config=nope.json"],
        "demo config train.livo.deepspeed_config: ",
    ),
    # Written, then StableDiffusionPipeline refused to generate at 6x6.
    "models init: a tiny --image-size diffusers cannot generate": (
        ["models", "init", "tiny", "m", "--image-size", "6"],
        "image_size: 6 is not a multiple of 8",
    ),
    # Reported by the top-level parser, pointing at `livo --help`.
    "dedup: a mistyped option": (
        ["dedup", "prompts.txt", "-o", "o.jsonl", "--thresold", "0.5"],
        "livo dedup: error: unrecognized arguments: --thresold 0.5 (see livo dedup --help)",
    ),
    "toyworld train: a mistyped option": (
        ["toyworld", "train", "--output", "m", "--stepz", "5"],
        "livo toyworld train: error: unrecognized arguments: --stepz 5",
    ),
    "models init: --image-size beyond any model": (
        ["models", "init", "tiny", "m", "--image-size", "99999999992"],
        "argument --image-size: must be at most 4096",
    ),
    "values build-index: one training file twice": (
        ["values", "build-index", "default", "-o", "idx", "--training", "prompts.txt", "--training", "./prompts.txt"],
        "--training ./prompts.txt: the same file as --training prompts.txt",
    ),
    "toyworld report: --guidance-scale nan": (
        ["toyworld", "report", "--output", "r", "--guidance-scale", "nan"],
        "argument --guidance-scale: must be a number >= 0, got 'nan'",
    ),
    "toyworld pairs: --bias-per-subject beyond any recipe": (
        ["toyworld", "pairs", "--output", "p", "--bias-per-subject", "100000000000"],
        "argument --bias-per-subject: must be at most 1000000",
    ),
    "eval: no such config": (["eval", "nope.yaml", "--output", "r"], "config nope.yaml: no such file"),
    "demo: output is a file": (["demo", "--output", "afile"], "--output afile: is a file"),
    "demo: no such config": (["demo", "--config", "nope.yaml"], "--config nope.yaml: no such file"),
    "serve: --replicas 0": (["serve", "--replicas", "0"], "replicas"),
    # Numbers out of range are named before they reach the native code, numpy or an allocation.
    "dedup: --num-perm beyond 64 bits": (
        ["dedup", "prompts.txt", "-o", "o.jsonl", "--num-perm", "99999999999999999999"],
        "argument --num-perm: must be at most 4096",
    ),
    "dedup: --threads 5000": (["dedup", "prompts.txt", "-o", "o.jsonl", "--threads", "5000"], "at most 1024"),
    "toyworld render: --seed -1": (
        ["toyworld", "render", "a doctor", "--output", "r.png", "--seed", "-1"],
        "argument --seed: must be an integer from 0 to 4294967295, got '-1'",
    ),
    "toyworld render: --scale 100000": (
        ["toyworld", "render", "a doctor", "--output", "r.png", "--scale", "100000"],
        "argument --scale: must be at most 64",
    ),
    "toyworld pairs: --seed -1": (["toyworld", "pairs", "--output", "p", "--seed", "-1"], "argument --seed"),
    "models init: --seed beyond 32 bits": (
        ["models", "init", "tiny", "m", "--seed", "99999999999999999999"],
        "argument --seed: must be at most 4294967295",
    ),
    "serve: --port 99999": (["serve", "--port", "99999"], "argument --port: must be at most 65535"),
    # Passed on to Ray, whose ValueError was a traceback.
    "serve: --num-cpus -3": (["serve", "--num-cpus", "-3"], "argument --num-cpus: must be an integer from 1 to 65536"),
    # --overwrite replaces a model folder whole: never a folder of other files.
    "toyworld train: --overwrite on a folder that is no model": (
        ["toyworld", "train", "--output", "full", "--overwrite"],
        "--output full: holds files this command did not write (no model_index.json)",
    ),
    "models init: --overwrite on a folder that is no model": (
        ["models", "init", "tiny", "full", "--overwrite"],
        "output full: holds files this command did not write",
    ),
}


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, float]:
    started = time.perf_counter()
    try:
        code = main(args)
    except SystemExit as exit_:  # argparse's usage errors
        code = int(exit_.code or 0)
    return code, capsys.readouterr().err, time.perf_counter() - started


@pytest.mark.parametrize("case", list(MISTAKES), ids=list(MISTAKES))
def test_a_mistake_is_one_line_and_exit_2_before_any_work(
    case: str, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args, expected = MISTAKES[case]
    if "ds-ok" in args:  # a real dataset, so that only the run folder is wrong
        assert (
            main(["toyworld", "pairs", "--output", "ds-ok", "--bias-per-subject", "1", "--harm-per-prompt", "1"]) == 0
        )
        capsys.readouterr()
    code, err, seconds = _run(args, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (code, err)
    assert len(lines) == 1, err
    assert lines[0].startswith(f"livo {args[0]}"), lines[0]
    assert expected in lines[0], lines[0]
    assert "Traceback" not in err
    assert not (workspace / "demo-out").exists(), "the demo made its output folder before the error"
    # Before any heavy work: no model was loaded, no image generated (in-process imports are warm).
    assert seconds < 10, f"{seconds:.1f} s"


def test_a_failed_first_write_leaves_nothing_and_the_corrected_retry_runs(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = pa.table({"record_id": ["a", "b"], "prompt": ["x", "y"]})  # no cluster_id: the split key
    pq.write_table(rows, workspace / "bad.parquet")
    code, err, _ = _run(["shards", "write", "bad.parquet", "-o", "ds", "--split", "train=1"], capsys)
    assert code == 2 and "cluster_id" in err
    assert not (workspace / "ds").exists()
    pq.write_table(rows.append_column("cluster_id", pa.array([0, 1], pa.int64())), workspace / "good.parquet")
    code, err, _ = _run(["shards", "write", "good.parquet", "-o", "ds"], capsys)  # other splits: fine
    assert code == 0, err
    assert sorted(p.name for p in (workspace / "ds").iterdir() if p.suffix == ".json") == ["manifest.json"]


def test_appending_pairs_is_explicit_and_reported_as_new_and_total(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small = ["toyworld", "pairs", "--output", "tp", "--bias-per-subject", "1", "--harm-per-prompt", "1"]
    assert main(small) == 0
    first = capsys.readouterr().out
    assert "(total 42; 0 before, 0 already present)" in first and "wrote 42 new pairs" in first
    code, err, _ = _run(small, capsys)
    assert code == 2 and "holds a dataset of 42 rows; pass --append" in err
    assert main([*small, "--append"]) == 0
    assert "wrote 0 new pairs to tp (total 42; 42 before, 42 already present)" in capsys.readouterr().out


def test_stats_refuses_a_column_the_dataset_lacks_and_prints_a_markdown_table(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["toyworld", "pairs", "--output", "tp", "--bias-per-subject", "1", "--harm-per-prompt", "1"]) == 0
    capsys.readouterr()
    code, err, _ = _run(["shards", "stats", "tp", "--by", "nosuchcol"], capsys)
    assert code == 2 and "no column ['nosuchcol']" in err
    assert main(["shards", "stats", "tp"]) == 0
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    assert table[0] == "| split | value_id | category | rows |"
    assert table[1] == "| --- | --- | --- | --- |"
    assert all(line.count("|") == 5 for line in table)


@pytest.mark.parametrize("suffix", [".txt", ".csv", ".jsonl", ".jsonl.gz"])
def test_an_empty_prompt_file_is_an_empty_input_in_every_format(
    suffix: str, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workspace / f"empty{suffix}").write_text("")
    assert main(["dedup", f"empty{suffix}", "-o", "o.parquet"]) == 0, capsys.readouterr().err
    assert pq.read_table(workspace / "o.parquet").num_rows == 0


def test_every_option_s_help_shows_its_default() -> None:
    """An option with a default (other than off/none) says it in --help: no option lacks a help text."""
    import argparse

    missing = []

    def walk(parser: argparse.ArgumentParser) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    walk(sub)
            elif action.option_strings and action.help is None:
                missing.append(f"{parser.prog} {action.option_strings[0]}")
            elif action.option_strings and action.help != argparse.SUPPRESS:
                text = parser._get_formatter()._expand_help(action)
                default = action.default
                # By identity: a default of 0 (a seed) equals False and was hidden.
                off = default is None or default is False or default == argparse.SUPPRESS or default == []
                if not off and "default" not in text.lower():
                    missing.append(f"{parser.prog} {action.option_strings[0]}")

    walk(build_parser())
    assert not missing, missing


def test_the_full_usage_imports_no_model_or_cluster_library() -> None:
    """``livo --help`` (or a mistyped command) registers every command: one that imported torch and
    transformers at the top of its module made that take 6 s instead of a quarter of one."""
    import subprocess
    import sys

    probe = (
        "import sys; from livo.cli import build_parser; build_parser([]); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'torch', 'diffusers', 'transformers', 'ray', 'deepspeed', 'faiss', 'polars'}))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
