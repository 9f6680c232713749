"""One exception root: every LiVO error is a ``livo.errors.LivoError`` (the engine's included), keeps
its builtin base, and the CLI turns exactly those (and path errors) into one-line user errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import livo._native as native
import livo.data.dedup_command
import livo.errors as errors
from livo import cli
from livo.data import DedupConfig, dedup

NATIVE_BASES = {
    "InvalidParameterError": ValueError,
    "InvalidUtf8Error": ValueError,
    "ManifestError": ValueError,
    "SchemaMismatchError": ValueError,
    "DatasetLockedError": OSError,
    "ParquetFileError": OSError,
}


def test_every_exported_class_is_a_livo_error():
    exported = {name: getattr(errors, name) for name in errors.__all__}
    assert set(NATIVE_BASES) | {"LivoError", "InputError", "ConfigError"} <= set(exported)
    assert exported["LivoError"].__bases__ == (Exception,)
    for name, cls in exported.items():
        assert isinstance(cls, type) and issubclass(cls, BaseException), name
        if name != "LivoError":
            assert issubclass(cls, errors.LivoError), name
    assert issubclass(errors.InputError, ValueError) and issubclass(errors.ConfigError, ValueError)


@pytest.mark.parametrize(("name", "builtin"), sorted(NATIVE_BASES.items()))
def test_native_classes_are_the_livo_errors_classes_with_their_builtin_base(name, builtin):
    cls = getattr(errors, name)
    assert getattr(native, name) is cls
    assert name in native.__all__
    assert issubclass(cls, errors.LivoError) and issubclass(cls, builtin)
    assert cls.__module__ == "livo.errors"
    other = ValueError if builtin is OSError else OSError
    assert not issubclass(cls, other)


def test_engine_raises_the_livo_error_subclass():
    with pytest.raises(errors.InvalidParameterError, match="threshold") as raised:
        dedup(["a"], DedupConfig(threshold=1.5))
    assert isinstance(raised.value, errors.LivoError) and isinstance(raised.value, ValueError)
    with pytest.raises(errors.LivoError, match="threshold"):
        native.lsh_params(0.0, 128)


def test_invalid_utf8_file_raises_invalid_utf8_error(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"a doctor\nbroken \xc3\x28 text\n")
    with pytest.raises(errors.InvalidUtf8Error, match=r"bad\.txt: line 2") as raised:
        native.read_text_lines(path)
    assert isinstance(raised.value, errors.InputError) and isinstance(raised.value, ValueError)


def test_engine_io_errors_on_user_paths_stay_builtin(tmp_path):
    with pytest.raises(FileNotFoundError) as raised:
        native.read_text_lines(tmp_path / "missing.txt")
    assert not isinstance(raised.value, errors.LivoError)


# --- CLI -----------------------------------------------------------------------------------


def dedup_args(tmp_path):
    return ["dedup", str(tmp_path / "in.txt"), "-o", str(tmp_path / "out.parquet")]


def test_cli_maps_an_engine_livo_error_to_one_line_and_exit_2(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"fine\nbroken \xc3\x28 text\n")
    proc = subprocess.run(
        [sys.executable, "-m", "livo.cli", "dedup", str(path), "-o", str(tmp_path / "o.parquet")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    message = f"livo dedup: error: {path}: line 2 is not valid UTF-8 (byte offset 7 in the line)"
    assert proc.stderr.splitlines() == [message]
    assert not (tmp_path / "o.parquet").exists()


@pytest.mark.parametrize(
    "error",
    [
        errors.InputError("in.txt: no prompts"),
        errors.ConfigError("threshold: must be in (0, 1]"),
        errors.InvalidParameterError("invalid parameter threshold=2"),
        errors.DatasetLockedError("out: locked by another writer"),
        FileNotFoundError("in.txt: No such file or directory"),
        PermissionError("in.txt: Permission denied"),
        IsADirectoryError("in.txt: Is a directory"),
        NotADirectoryError("in.txt: Not a directory"),
        FileExistsError("out.parquet: exists"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_cli_maps_user_errors_to_one_line_and_exit_2(monkeypatch, capsys, tmp_path, error):
    def run(args):
        raise error

    monkeypatch.setattr(livo.data.dedup_command, "run_dedup", run)
    assert cli.main(dedup_args(tmp_path)) == 2
    captured = capsys.readouterr()
    assert captured.err == f"livo dedup: error: {error}\n"


@pytest.mark.parametrize(
    "error", [ValueError("a bug"), OSError("disk on fire"), KeyError("bug")], ids=lambda e: type(e).__name__
)
def test_cli_lets_errors_that_are_not_livo_errors_through(monkeypatch, tmp_path, error):
    def run(args):
        raise error

    monkeypatch.setattr(livo.data.dedup_command, "run_dedup", run)
    with pytest.raises(type(error)) as raised:
        cli.main(dedup_args(tmp_path))
    assert raised.value is error


def test_cli_shows_a_traceback_for_a_bare_value_error(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        import livo.data.dedup_command
        from livo import cli

        def run(args):
            raise ValueError("a programming bug")

        livo.data.dedup_command.run_dedup = run
        sys.exit(cli.main({dedup_args(tmp_path)!r}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr
    assert proc.stderr.strip().endswith("ValueError: a programming bug")
    assert "livo dedup: error" not in proc.stderr
