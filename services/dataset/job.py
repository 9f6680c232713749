"""Ray job entry point of dataset construction.

On a cluster (from the repository root, which becomes the job's working directory):

    ray job submit --address http://HEAD:8265 --working-dir . \
        --runtime-env services/dataset/runtime_env.yaml -- \
        python services/dataset/job.py python/livo/dataset/configs/toyworld.yaml -o /shared/toy-pairs

The job's driver joins the cluster (``ray job submit`` sets ``RAY_ADDRESS``; ``--address auto``
says so explicitly), so the same config scales from one machine to many with no code change: set
``generation.actors`` (and ``gpus_per_actor``) to the cluster's size. The output directory must be
storage every node's driver can reach (only the driver writes). Resubmitting the same job resumes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping


def build_arguments(args: list[str], environ: MutableMapping[str, str]) -> list[str]:
    """The ``livo build-dataset`` arguments of a job: ``args`` plus ``--address auto`` unless an
    address is given (``--address HOST`` or ``--address=HOST``) or ``RAY_ADDRESS`` names the cluster.
    A ``RAY_ADDRESS`` that is the job API's (``http://HEAD:8265``, which ``ray job submit`` passes
    on) is removed from ``environ``: a job's driver runs on a node of the cluster and joins it with
    ``auto``."""
    if environ.get("RAY_ADDRESS", "").startswith(("http://", "https://")):
        del environ["RAY_ADDRESS"]
    given = any(arg == "--address" or arg.startswith("--address=") for arg in args)
    if not given and "RAY_ADDRESS" not in environ:
        args = [*args, "--address", "auto"]
    return ["build-dataset", *args]


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from livo.cli import main as livo_main

    return livo_main(build_arguments(list(sys.argv[1:] if argv is None else argv), os.environ))


if __name__ == "__main__":
    sys.exit(main())
