"""Normal file modes for outputs that livo publishes by temp file + rename, and that atomic write.

``tempfile.mkstemp`` creates files 0600 and ``mkdtemp`` folders 0700 whatever the umask, and recent
transformers write ``model.safetensors`` 0600 as well. Renamed into place, such outputs stay private
even where the user's umask shares everything else: a model trained by one account could not be
served by another, a report could not be read by a web server. Before the rename, livo gives them
the modes a plain ``open()`` / ``mkdir()`` would have (0644 / 0755 under the usual umask 022).
"""

from __future__ import annotations

import errno
import glob
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def current_umask() -> int:
    """The process's umask, read without changing it (``/proc``; elsewhere set and restored)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o077)  # briefly: another thread creating a file now would get 0o077
    os.umask(mask)
    return mask


def make_shareable(path: str | os.PathLike[str]) -> None:
    """Gives ``path`` (a file, or a folder and everything in it) the modes the umask allows: 0666 for
    files (0777 for those with an execute bit) and 0777 for folders, less the umask."""
    mask = current_umask()
    root = Path(path)

    def fix(item: Path) -> None:
        if item.is_symlink():
            return
        if item.is_dir():
            item.chmod(0o777 & ~mask)
        else:
            executable = item.stat().st_mode & 0o111
            item.chmod((0o777 if executable else 0o666) & ~mask)

    fix(root)
    if root.is_dir() and not root.is_symlink():
        for folder, dirs, files in os.walk(root):
            for name in [*dirs, *files]:
                fix(Path(folder) / name)


def _fsync_folder(folder: Path) -> None:
    """Makes a rename or a new entry in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """fsyncs every file of ``root``, then its folders (deepest first)."""
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            file = Path(folder) / name
            if file.is_symlink():
                continue
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
        _fsync_folder(Path(folder))


def _resolved(path: str | os.PathLike[str]) -> Path:
    """``path``, or where it points when it is a symbolic link: an output given as a link to another
    disk is written there, not replaced by a file beside the link."""
    path = Path(path)
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def write_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Writes ``data`` to ``path`` so readers see the old file or the new one, never a part
    (:func:`atomic_file`). A ``path`` that is a symbolic link is written where it points."""
    with atomic_file(path) as temp:
        temp.write_bytes(data)
    return _resolved(path)


@contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yields a temp file's path beside ``path`` for the block to write; when the block ends normally
    the file is fsynced, given the mode of the file it replaces (else the umask's), renamed over
    ``path`` and the rename fsynced, so readers and crashes see the old file or the new one, never
    a part. When the block raises, the temp file is removed and ``path`` is left as it was. A
    ``path`` that is a symbolic link is written where it points."""
    target = _resolved(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = target.stat().st_mode & 0o7777 if target.is_file() else None  # a private file stays private
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    temp = Path(name)
    try:
        yield temp
        with open(temp, "rb") as handle:
            os.fsync(handle.fileno())
        if mode is None:
            make_shareable(temp)
        else:
            os.chmod(temp, mode)
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_folder(target.parent)


def _owner_tag() -> str:
    """``HOST.PID.``: names a staging folder's writer, so a later writer on the same host can tell
    one left by a killed process from one still being written."""
    return f"{socket.gethostname()}.{os.getpid()}."


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another account's
        return False
    return False


def _rename_unless_taken(staging: Path, target: Path) -> None:
    # rename(2) replaces an empty folder and fails on one that holds anything (ENOTEMPTY, or EEXIST
    # on some systems) or on a file there (ENOTDIR): no moment exists in which both could be seen.
    try:
        os.rename(staging, target)
    except OSError as error:
        if error.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
            raise
        raise FileExistsError(
            f"{target}: was written by something else while this run worked (it was free when the run "
            "started); nothing of it was replaced"
        ) from None


def sweep_abandoned(target: Path) -> None:
    """Cleans up after a writer of ``target`` that was killed (SIGKILL, SIGTERM, power loss) inside
    :func:`replace_folder`: its staging folder (model-sized) is removed, and an old folder it had
    moved aside without moving the new one in is put back at ``target``. Only folders of processes
    of this host that no longer exist are touched."""
    host = socket.gethostname()
    for kind in ("tmp", "old"):
        prefix = f".{target.name}.{kind}-{host}."
        # Escaped: a folder named "exp[1]" is a pattern of one character class otherwise.
        for leftover in target.parent.glob(f"{glob.escape(f'.{target.name}.{kind}-')}*"):
            pid = leftover.name[len(prefix) :].split(".", 1)[0] if leftover.name.startswith(prefix) else ""
            if not pid.isdigit() or not _process_gone(int(pid)):
                continue
            old = leftover / target.name
            if kind == "old" and old.is_dir() and not os.path.lexists(target):
                os.replace(old, target)
                _fsync_folder(target.parent)
            shutil.rmtree(leftover, ignore_errors=True)


@contextmanager
def replace_folder(path: str | os.PathLike[str], *, keep_existing: bool = False) -> Iterator[Path]:
    """Yields an empty staging folder beside ``path``; when the block ends normally the staging
    folder, given the umask's modes and fsynced, replaces ``path``, so a reader or a crash never
    finds a half-written folder there. The old folder is moved aside first and removed only once
    the new one is in place and durable; if anything fails in between (an interrupt included), it
    is moved back. When the block raises, the staging folder is removed and ``path`` is left as it
    was. A ``path`` that is a symbolic link is replaced where it points. What a killed writer of the
    same path left is cleaned up first (:func:`sweep_abandoned`).

    ``keep_existing``: ``path`` is not replaced if it holds anything when the block ends (an empty
    folder is replaced): :class:`FileExistsError` instead, and the staging folder is removed. A
    command that refuses an existing output checks when it starts; this closes the window to the
    end, where a second run started meanwhile into the same new output would have replaced the
    first's without a word. The rename is the check, so nothing can come in between."""
    target = _resolved(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_abandoned(target)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{_owner_tag()}", dir=target.parent))
    old: Path | None = None
    try:
        yield staging
        make_shareable(staging)  # mkdtemp makes 0700, and transformers writes model.safetensors 0600
        _fsync_tree(staging)
        if keep_existing:
            _rename_unless_taken(staging, target)
        elif target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-{_owner_tag()}", dir=target.parent)) / target.name
            os.replace(target, old)
        if not keep_existing:
            os.replace(staging, target)
        _fsync_folder(target.parent)
    except BaseException:
        if old is not None and not target.exists():
            os.replace(old, target)  # the old folder goes back: the output is never missing
        if old is not None:
            shutil.rmtree(old.parent, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old.parent, ignore_errors=True)
