"""Where livo keeps what it derives once per machine (weight hashes, exported ONNX models):
``$LIVO_CACHE_DIR``, or ``~/.cache/livo``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The livo cache folder (not created here)."""
    # An empty variable counts as unset: it would put the cache in the working folder. "~" is the
    # home folder, as in configs (a shell leaves it as written in quotes or an .env file).
    return Path(os.environ.get("LIVO_CACHE_DIR") or Path.home() / ".cache" / "livo").expanduser()
