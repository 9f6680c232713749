"""Runs distributed dedup on a fresh local Ray whose every worker process sits in its own cgroup-v1
memory group, and the single-process dedup of the same corpus in a group of its own. A worker joins
its group when Ray has started it (pages it had then stay charged where they were), so its group's
limit is CAP_MIB less its resident size at that moment: the worker's whole memory stays under CAP_MIB. Prints one JSON line: whether the
single-process run was killed, whether the distributed result equals the uncapped single-process
one, how many workers ran, their peak and whether any hit its cap.

Usage: dedup_ray_capped_workers.py WORK_DIR CAP_MIB [ROWS]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROWS = 400_000


def memory_cgroup() -> Path:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return Path("/sys/fs/cgroup/memory" + path)
    raise SystemExit("no cgroup-v1 memory controller: this check needs one (and root)")


def resident_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def enter_capped_group(name: str = "worker", resident: int | None = None) -> None:
    """Ray's worker set-up hook: this process moves into its own group, limited to the cap less what
    it holds already."""
    group = Path(os.environ["LIVO_CAP_PARENT"]) / f"{name}-{os.getpid()}"
    group.mkdir(exist_ok=True)
    held = resident_bytes() if resident is None else resident
    (group / "memory.limit_in_bytes").write_text(str(int(os.environ["LIVO_CAP_BYTES"]) - held))
    (group / "cgroup.procs").write_text(str(os.getpid()))


def enter_single_group() -> None:
    # Runs between fork and exec: the process starts afresh in the group, holding nothing yet.
    enter_capped_group("single", resident=0)


def peak_bytes(group: Path, cap: int) -> int:
    """The group's peak: what its process held on joining (the cap less the group's limit) plus the
    most the group was charged since."""
    held = cap - int((group / "memory.limit_in_bytes").read_text())
    return held + int((group / "memory.max_usage_in_bytes").read_text())


def oom_kills(group: Path) -> int:
    """Processes of the group the kernel killed for exceeding its limit (reclaiming page cache at the
    limit is not a kill)."""
    for line in (group / "memory.oom_control").read_text().splitlines():
        if line.startswith("oom_kill "):
            return int(line.split()[1])
    return 0


def remove_groups(parent: Path) -> None:
    for _ in range(50):
        for group in parent.glob("*"):
            if group.is_dir():
                try:
                    group.rmdir()
                except OSError:
                    pass
        try:
            parent.rmdir()
            return
        except OSError:
            time.sleep(0.2)


def main() -> None:
    work, cap_mib = Path(sys.argv[1]), int(sys.argv[2])
    rows = int(sys.argv[3]) if len(sys.argv) > 3 else ROWS
    cap = cap_mib << 20
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from livo.data.dedup import dedup_file
    from livo.data.synthetic import labelled_corpus

    corpus = work / "corpus.parquet"
    pq.write_table(pa.table({"prompt": list(labelled_corpus(rows, seed=7).texts)}), corpus, row_group_size=10_000)
    parent = memory_cgroup() / f"livo-capped-{os.getpid()}"
    parent.mkdir()
    os.environ.update(LIVO_CAP_PARENT=str(parent), LIVO_CAP_BYTES=str(cap))
    try:
        # The single-process run under the same cap.
        single = subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"from livo.data.dedup import dedup_file; dedup_file({str(corpus)!r}, {str(work / 'single.parquet')!r})",
            ],
            preexec_fn=enter_single_group,
        )
        single_killed = single.wait(timeout=300) == -9

        reference = dedup_file(corpus, work / "reference.parquet").cluster_id
        import ray

        from livo.data.dedup_ray import RayDedupOptions, dedup_ray
        from livo.runtime import start_ray

        # The object store is the node's own budget (it spills to disk beyond it), not a worker's: the
        # raylet touches all of it at start, so its pages are not charged to the first worker that
        # writes an object into them.
        os.environ["RAY_preallocate_plasma_memory"] = "1"
        start_ray(
            None,
            num_cpus=2,
            log_to_driver=False,
            runtime_env={"worker_process_setup_hook": enter_capped_group},
            object_store_memory=512 << 20,
        )
        result = dedup_ray(
            [corpus], work / "out", options=RayDedupOptions(piece_bytes=1 << 20, partitions=8, task_memory=cap // 2)
        )
        table = pa.concat_tables([pq.read_table(p, columns=["cluster_id"]) for p in result.parts])
        identical = bool(np.array_equal(table.column("cluster_id").to_numpy(), reference))
        groups = [g for g in parent.glob("worker-*") if g.is_dir()]
        peak = max(peak_bytes(g, cap) for g in groups)
        kills = sum(oom_kills(g) for g in groups)
        ray.shutdown()
    finally:
        remove_groups(parent)
    print(
        json.dumps(
            {
                "rows": rows,
                "cap_mib": cap_mib,
                "single_process_killed": single_killed,
                "identical": identical,
                "workers": len(groups),
                "peak_worker_mib": round(peak / 2**20, 1),
                "oom_kills": kills,
                "seconds": round(result.seconds, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
