"""Worker processes that end when the process that started them dies.

A killed ``livo demo`` or ``livo toyworld train`` must not leave training processes running (and
saving) on their own. Linux can send a process a signal when its parent dies
(``PR_SET_PDEATHSIG``); SIGTERM is used because a job started in the background (``&``, ``nohup``)
inherits SIGINT ignored, and then torch's own choice of SIGINT does nothing. Elsewhere these
functions do nothing.
"""

from __future__ import annotations

import os
import sys

LAUNCHER_ENV = "LIVO_LAUNCHER_PID"


def end_with_parent(expected_parent: int | None = None) -> None:
    """Ask Linux to send this process SIGTERM when its parent dies.

    ``expected_parent``: the launcher's pid (default: the parent before the request). If the parent
    is another process once the request took effect (the launcher died first, and this process was
    re-parented), exit at once. A launcher may itself be pid 1 (a container's first process): only a
    change of parent counts."""
    if not sys.platform.startswith("linux"):  # PR_SET_PDEATHSIG is Linux-only
        return
    import ctypes
    import signal

    expected = os.getppid() if expected_parent is None else expected_parent
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    if os.getppid() != expected:
        os._exit(1)


def launcher_environment(environment: dict[str, str]) -> dict[str, str]:
    """``environment`` for a child started with ``subprocess``: names this process as its launcher,
    so that the child's :func:`end_with_launcher` ties the child's life to this process."""
    return {**environment, LAUNCHER_ENV: str(os.getpid())}


def end_with_launcher() -> None:
    """In a child started with :func:`launcher_environment`: end when the launcher dies.

    The variable is removed here, so that this process's own children do not inherit it."""
    launcher = os.environ.pop(LAUNCHER_ENV, None)
    if launcher is not None and launcher.isdigit():
        end_with_parent(int(launcher))
