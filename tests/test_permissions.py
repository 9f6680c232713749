"""Published outputs get the modes the umask allows, not tempfile's private 0600/0700."""

import os
import socket
import stat
import tempfile
from pathlib import Path

import pytest

from livo.permissions import current_umask, make_shareable


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_current_umask_reads_the_process_umask_without_changing_it(umask_022):
    assert current_umask() == 0o022
    os.umask(0o027)
    assert current_umask() == 0o027
    assert os.umask(0o022) == 0o027  # still what was set: reading did not change it


def test_a_staged_folder_gets_umask_modes_throughout(tmp_path, umask_022):
    staging = Path(tempfile.mkdtemp(dir=tmp_path))  # 0700
    (staging / "sub").mkdir(mode=0o700)
    private = staging / "sub" / "model.safetensors"
    private.write_bytes(b"x")
    private.chmod(0o600)
    script = staging / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o700)
    make_shareable(staging)
    assert _mode(staging) == 0o755 and _mode(staging / "sub") == 0o755
    assert _mode(private) == 0o644
    assert _mode(script) == 0o755


def test_a_saved_toy_pipeline_is_readable_by_others(tmp_path, umask_022):
    from livo.toyworld.model import assemble_pipeline, build_text_encoder, build_unet, save_pipeline

    folder = tmp_path / "model"
    save_pipeline(assemble_pipeline(build_text_encoder(0), build_unet(0)), folder)
    modes = {p.relative_to(folder).as_posix(): _mode(p) for p in [folder, *folder.rglob("*")]}
    assert modes["."] == 0o755 and modes["unet/diffusion_pytorch_model.safetensors"] == 0o644
    assert modes["text_encoder/model.safetensors"] == 0o644  # transformers writes it 0600
    assert all(mode in (0o644, 0o755) for mode in modes.values()), modes


def test_write_atomic_replaces_the_file_whole_with_umask_modes(tmp_path, umask_022):
    from livo.permissions import write_atomic

    target = tmp_path / "new" / "report.json"
    write_atomic(target, b"old")
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new" and _mode(target) == 0o644
    assert [p.name for p in target.parent.iterdir()] == ["report.json"]  # no temp file left


def test_write_atomic_keeps_a_private_file_private_and_writes_through_a_link(tmp_path, umask_022):
    """An --overwrite made a 0600 file 0644, and an output given as a link to another disk was
    replaced by a file beside the link, the linked file keeping its old contents."""
    from livo.permissions import write_atomic

    secret = tmp_path / "secret.json"
    secret.write_bytes(b"old")
    secret.chmod(0o600)
    write_atomic(secret, b"new")
    assert secret.read_bytes() == b"new" and _mode(secret) == 0o600
    elsewhere = tmp_path / "disk" / "report.json"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(b"old")
    link = tmp_path / "report.json"
    link.symlink_to(elsewhere)
    write_atomic(link, b"new")
    assert link.is_symlink() and elsewhere.read_bytes() == b"new"


@pytest.mark.parametrize("name", ["kept.csv", "kept.parquet"])
def test_a_written_table_keeps_a_private_file_private_and_writes_through_a_link(tmp_path, umask_022, name):
    """``livo dedup -o`` and ``livo values select -o`` wrote their tables by a rename of their own:
    a 0600 output became 0644, and an output given as a link was replaced by a file beside it."""
    import pyarrow as pa

    from livo.data.io import read_table, write_table

    table = pa.table({"prompt": ["a doctor", "a kite"]})
    secret = tmp_path / name
    write_table(table, secret)
    secret.chmod(0o600)
    write_table(table, secret)
    assert _mode(secret) == 0o600 and read_table(secret).column("prompt").to_pylist() == ["a doctor", "a kite"]
    elsewhere = tmp_path / "disk" / name
    elsewhere.parent.mkdir()
    link = tmp_path / f"link-{name}"
    link.symlink_to(elsewhere)
    write_table(table, link)
    assert link.is_symlink() and read_table(elsewhere).num_rows == 2
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp file left


def test_a_folder_replacement_cut_off_between_its_renames_puts_the_old_folder_back(tmp_path, monkeypatch):
    """The old folder was moved aside before the new one was moved in; an interrupt in between left
    no folder at the path and the old one hidden in a temporary folder."""
    import livo.permissions as permissions

    target = tmp_path / "model"
    target.mkdir()
    (target / "weights").write_text("old")
    real_replace, calls = os.replace, []

    def interrupted_second_rename(source, destination):  # noqa: ANN001, ANN202
        calls.append(source)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_replace(source, destination)

    monkeypatch.setattr(permissions.os, "replace", interrupted_second_rename)
    with pytest.raises(KeyboardInterrupt), permissions.replace_folder(target) as staging:
        (staging / "weights").write_text("new")
    monkeypatch.undo()
    assert (target / "weights").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no staging or old folder left


@pytest.mark.parametrize("name", ["model", "exp[1]"])  # a name with glob characters
@pytest.mark.parametrize("moment", ["writing", "between the renames"])
def test_what_a_killed_folder_writer_left_is_cleaned_up_by_the_next_writer(tmp_path, moment, name):
    """SIGKILL (or SIGTERM's default action) runs no cleanup: a killed export left its model-sized
    staging folder beside the output for good, and one killed between its two renames left no output
    and the old one hidden. The next writer of the path removes the first and puts the second back;
    a live writer's staging folder is left alone."""
    import subprocess
    import sys

    from livo.permissions import replace_folder

    target = tmp_path / name
    target.mkdir()
    (target / "weights").write_text("old")
    script = (
        "import os, signal, sys\n"
        "from livo import permissions\n"
        "real = os.replace\n"
        "def kill_second(source, destination, calls=[]):\n"
        "    calls.append(source)\n"
        "    if len(calls) == 2: os.kill(os.getpid(), signal.SIGKILL)\n"
        "    real(source, destination)\n"
        f"if {moment == 'between the renames'}: permissions.os.replace = kill_second\n"
        "with permissions.replace_folder(sys.argv[1]) as staging:\n"
        "    (staging / 'weights').write_text('new')\n"
        f"    if {moment == 'writing'}: os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    killed = subprocess.run([sys.executable, "-c", script, str(target)], check=False)
    assert killed.returncode == -9
    left = sorted(p.name for p in tmp_path.iterdir() if p.name != name)
    kinds = [f".{name}.tmp-"] if moment == "writing" else [f".{name}.old-", f".{name}.tmp-"]
    assert [name[: len(kind)] for name, kind in zip(left, kinds, strict=True)] == kinds
    assert target.exists() == (moment == "writing")
    live = tmp_path / f".{name}.tmp-{socket.gethostname()}.{os.getpid()}.abc"
    live.mkdir()
    with pytest.raises(RuntimeError), replace_folder(target):
        raise RuntimeError("the new write fails: the output must still be there")
    assert (target / "weights").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, live.name])


def test_a_folder_written_meanwhile_is_not_replaced_when_existing_output_is_kept(tmp_path):
    # Two runs into the same new output, neither allowed to overwrite: both found it free at their
    # start, and the second to finish replaced the first's output without a word.
    from livo.permissions import replace_folder

    target = tmp_path / "index"
    with pytest.raises(FileExistsError, match="was written by something else while this run worked"):
        with replace_folder(target, keep_existing=True) as staging:
            (staging / "mine.txt").write_text("mine")
            target.mkdir()
            (target / "theirs.txt").write_text("theirs")  # another run finished first
    assert sorted(p.name for p in target.iterdir()) == ["theirs.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]  # no staging folder left
    (target / "theirs.txt").unlink()
    with replace_folder(target, keep_existing=True) as staging:  # an empty folder is free
        (staging / "mine.txt").write_text("mine")
    assert (target / "mine.txt").read_text() == "mine"
    with replace_folder(target) as staging:  # the default replaces
        (staging / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
