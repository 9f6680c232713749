"""Process-group environment for DeepSpeed, with or without a launcher.

``deepspeed``/``torchrun`` set ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``; a plain ``livo train`` / Python call does not, and DeepSpeed would then try MPI
discovery. :func:`single_process_defaults` fills in a world of one on a free local port, so the
same code runs under a launcher and alone. DeepSpeed builds a small shared-memory op on CPU the
first time (cached in ``TORCH_EXTENSIONS_DIR``); it needs ``ninja``, which the virtual environment
ships next to the interpreter, so that folder is put on ``PATH`` when ``ninja`` is not found.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from livo.runtime import free_port

# What a launcher (or :func:`single_process_defaults`) sets for one process group.
PROCESS_GROUP_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def new_world_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without a process group's variables: for a training started as a process of its own
    from a process that may have trained already (its port is still held by that process group)."""
    return {name: value for name, value in environ.items() if name not in PROCESS_GROUP_VARIABLES}


def single_process_defaults() -> bool:
    """Set a one-process world in the environment unless a launcher did; returns whether it did."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        os.environ.setdefault("LOCAL_RANK", os.environ["RANK"])
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        return False
    os.environ.update({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"})
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(free_port()))
    return True


@contextlib.contextmanager
def one_process_world() -> Iterator[bool]:
    """A one-process world's variables for the block, unless a launcher set them; yields whether it
    set them.

    Variables set here are put back as they were on the way out. Left behind, ``MASTER_PORT`` (held
    by this process's group) and ``RANK``/``WORLD_SIZE`` would pass to every process the caller starts
    afterwards: a launcher started from a notebook that had trained in-process would try to bind a
    port already in use. The process group itself stays up: DeepSpeed keeps its groups for the life of
    the process, and the next run in this process reuses it."""
    saved = {name: os.environ.get(name) for name in PROCESS_GROUP_VARIABLES}
    made = single_process_defaults()
    try:
        yield made
    finally:
        if made:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def ensure_build_tools() -> None:
    """Put the interpreter's folder on ``PATH`` when ``ninja`` is missing there (DeepSpeed's
    JIT op build calls it by name)."""
    if shutil.which("ninja") is None:
        folder = str(Path(sys.executable).parent)
        os.environ["PATH"] = folder + os.pathsep + os.environ.get("PATH", "")


def rank_and_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def set_collective_timeout(seconds: float) -> None:
    """Give every process group of this process, DeepSpeed's own included, a collective timeout of
    ``seconds``.

    ``init_distributed(timeout=...)`` sets it on the default group only; the groups DeepSpeed
    creates afterwards (ZeRO's data-parallel all-reduce runs on one) get torch's 30-minute default,
    so a peer that stops answering without closing its connection held every other rank for
    30 minutes whatever the config said."""
    import datetime

    import torch.distributed as dist
    from torch.distributed import distributed_c10d

    if not (dist.is_available() and dist.is_initialized()):
        return
    timeout = datetime.timedelta(seconds=seconds)
    # Every group is listed only in torch's private registry; without it, the default group at least.
    groups = getattr(getattr(distributed_c10d, "_world", None), "pg_map", None)
    for group in list(groups) if groups else [None]:
        dist.set_timeout(timeout, group)


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def shutdown() -> None:
    """Tear the process group down before the interpreter exits. Left to interpreter shutdown, the
    gloo group's destructor races module teardown: a finished 2-rank torchrun run once died with
    SIGSEGV in both ranks after exporting, so the launcher reported a failure."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
