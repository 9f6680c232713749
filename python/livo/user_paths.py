"""Checks on the paths a user gives a command, made before any heavy work.

A command that loads models for a minute and then finds its output path is a file loses the minute;
one that overwrites last week's results because the same path was typed again loses more. Every
``livo`` command therefore checks its inputs and outputs first, with these functions, and a mistake
is one line naming the flag (or config field) and the path: ``--output runs/x: is a file; a folder
is needed here``. The errors are :class:`~livo.errors.InputError`, which the CLI prints on one line
with exit status 2.

Outputs that exist are only replaced with ``overwrite=True`` (the commands' ``--overwrite``), except
where a command documents its own resume semantics and checks them itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from livo.errors import InputError


def _named(flag: str, path: str | os.PathLike[str]) -> str:
    return f"{flag} {path}" if flag else str(path)


def _given(path: str | os.PathLike[str], flag: str) -> Path:
    """``path`` as a Path, refusing an empty one (``Path("")`` is the working directory, so ``-o ''``
    was reported as "--output .: is a folder")."""
    if os.fspath(path) == "":
        raise InputError(f"{flag or 'path'}: empty; give a file or folder name")
    return Path(path)


def _refuse_broken_link(path: Path, flag: str) -> None:
    """An output path that is a symbolic link to nothing: writing through it fails deep in the work
    (or replaces the link with a file), so it is named first."""
    if path.is_symlink() and not path.exists():
        raise InputError(
            f"{_named(flag, path)}: a symbolic link to {os.readlink(path)}, which does not exist; "
            "remove the link or give another path"
        )


def input_file(path: str | os.PathLike[str], *, flag: str, suffixes: Iterable[str] | None = None) -> Path:
    """An existing, readable file (of one of ``suffixes`` when given)."""
    path = _given(path, flag)
    if not path.exists():
        raise InputError(f"{_named(flag, path)}: no such file")
    if path.is_dir():
        raise InputError(f"{_named(flag, path)}: is a folder; a file is needed here")
    if not os.access(path, os.R_OK):
        raise InputError(f"{_named(flag, path)}: not readable (permission denied)")
    _check_suffix(path, flag, suffixes)
    return path


def input_folder(path: str | os.PathLike[str], *, flag: str) -> Path:
    """An existing, readable folder."""
    path = _given(path, flag)
    if not path.exists():
        raise InputError(f"{_named(flag, path)}: no such folder")
    if not path.is_dir():
        raise InputError(f"{_named(flag, path)}: is a file; a folder is needed here")
    if not os.access(path, os.R_OK | os.X_OK):
        raise InputError(f"{_named(flag, path)}: not readable (permission denied)")
    return path


def output_file(
    path: str | os.PathLike[str],
    *,
    flag: str,
    overwrite: bool,
    suffixes: Iterable[str] | None = None,
) -> Path:
    """A file the command may write: not a folder, in a folder it can create or write to, and, if it
    exists, replaced only with ``overwrite``."""
    path = _given(path, flag)
    _refuse_broken_link(path, flag)
    if path.is_dir():
        raise InputError(f"{_named(flag, path)}: is a folder; a file is needed here")
    _check_suffix(path, flag, suffixes)
    if path.exists() and not overwrite:
        raise InputError(f"{_named(flag, path)}: exists; pass --overwrite to replace it")
    _check_writable_parent(path, flag)
    return path


def output_folder(
    path: str | os.PathLike[str],
    *,
    flag: str,
    overwrite: bool,
    resumable: bool = False,
    replaced_whole: tuple[str, ...] = (),
) -> Path:
    """A folder the command may write into: not a file, creatable or writable, and, if it holds
    anything, written over only with ``overwrite`` (or left to the command when ``resumable``: it
    continues or refuses the folder by its own rules).

    A command that replaces the folder whole names in ``replaced_whole`` the files its own output
    holds (one is enough): ``overwrite`` then replaces only a folder holding one of them, never one
    of the user's other folders named by mistake, which would be deleted with everything in it."""
    path = _given(path, flag)
    _refuse_broken_link(path, flag)
    if path.exists() and not path.is_dir():
        raise InputError(f"{_named(flag, path)}: is a file; a folder is needed here")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise InputError(f"{_named(flag, path)}: not writable (permission denied)")
        if not resumable and any(path.iterdir()):
            if not overwrite:
                raise InputError(f"{_named(flag, path)}: exists and is not empty; pass --overwrite to write over it")
            if replaced_whole and not any((path / name).is_file() for name in replaced_whole):
                raise InputError(
                    f"{_named(flag, path)}: holds files this command did not write (no {' or '.join(replaced_whole)}); "
                    "--overwrite replaces the whole folder, so choose an empty or new folder"
                )
        return path
    _check_writable_parent(path, flag)
    return path


def _check_suffix(path: Path, flag: str, suffixes: Iterable[str] | None) -> None:
    if suffixes is None:
        return
    allowed = sorted(suffixes)
    # Compound extensions count whole: ".jsonl.gz" is allowed only where it is listed.
    if path.name.lower().endswith(tuple(allowed)):
        return
    # A compound extension is shown whole when its last part is one the allowed compounds end with.
    compound_ends = {"." + suffix.rsplit(".", 1)[1] for suffix in allowed if suffix.count(".") > 1}
    shown = "".join(path.suffixes[-2:]) if path.suffix.lower() in compound_ends else path.suffix
    raise InputError(f"{_named(flag, path)}: unsupported file extension {shown!r} (supported: {_listed(allowed)})")


def _listed(suffixes: list[str]) -> str:
    """``.a, .b`` for plain extensions; compound ones (``.b.gz``) summed up by their last part."""
    plain = [suffix for suffix in suffixes if suffix.count(".") == 1]
    compound = [suffix for suffix in suffixes if suffix.count(".") > 1]
    text = ", ".join(plain)
    if compound:
        outer = sorted({"." + suffix.rsplit(".", 1)[1] for suffix in compound})
        inner = sorted({suffix.rsplit(".", 1)[0] for suffix in compound})
        text += f"; also {', '.join(outer)} after {', '.join(inner)}"
    return text


def _check_writable_parent(path: Path, flag: str) -> None:
    """The nearest existing ancestor must be a writable folder (the command creates the rest)."""
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{_named(flag, path)}: {parent} is a file, so nothing can be created under it")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{_named(flag, path)}: cannot create it in {parent} (permission denied)")
