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


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from livo.cli import main as livo_main

    args = list(sys.argv[1:] if argv is None else argv)
    if os.environ.get("RAY_ADDRESS", "").startswith(("http://", "https://")):
        # The job API's address (`ray job submit --address http://HEAD:8265` passes it on), not the
        # cluster's: a job's driver runs on a node of the cluster, and joins it with `auto`.
        del os.environ["RAY_ADDRESS"]
    if "--address" not in args and "RAY_ADDRESS" not in os.environ:
        args += ["--address", "auto"]
    return livo_main(["build-dataset", *args])


if __name__ == "__main__":
    sys.exit(main())
