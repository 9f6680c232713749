"""Cluster mode on a real two-node Ray cluster on this machine (`scripts/cluster.sh`): each node in its
own network namespace, a dataset build submitted through the job API, a worker node killed mid-build,
and nothing left behind by `down`, even after a failed `up`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from livo.data.shards import Manifest, verify_shards
from livo.dataset.sink import read_ledger

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "scripts" / "cluster.sh"

pytestmark = pytest.mark.timeout(600)
needs_namespaces = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="network namespaces need root and iproute2"
)

BUILD = """\
sources:
  generators: {toyworld: {count: 200, seed: 0}}
selection:
  registry: toyworld
  embedder: minilm
generation:
  model: builtin:toyworld
  steps: 4
  guidance_scale: 5.0
  samples_per_prompt: 40
  batch_size: 8
  actors: 2
  cpus_per_actor: 1
  torch_threads: 1
judges:
  default: {kind: toyworld}
  subject: {kind: toyworld}
output:
  target_shard_bytes: 1048576
  row_group_bytes: 262144
  checkpoint_seconds: 1
"""


def cluster(*args: str, state: Path, check: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["bash", str(CLUSTER), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "LIVO_CLUSTER_DIR": str(state), **env},
    )
    if check and done.returncode != 0:
        raise AssertionError(f"cluster.sh {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


def left_behind(cluster_id: str | None = None) -> list[str]:
    """Namespaces, links and (for ``cluster_id``) processes of a cluster still on the machine."""
    found = [
        line.split()[0]
        for line in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.splitlines()
        if line.startswith("livo-node")
    ]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    found += [name for name in ("livobr0", "lvh0", "lvh1") if f" {name}:" in links or f" {name}@" in links]
    if cluster_id:
        for pid in os.listdir("/proc"):
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"LIVO_CLUSTER={cluster_id}".encode() in environ:
                found.append(f"process {pid}")
    return found


@pytest.fixture
def state():
    import tempfile

    # Short: Ray's socket paths under it must stay within AF_UNIX's 107 bytes.
    folder = Path(tempfile.mkdtemp(prefix="lc", dir="/tmp")) / "c"
    yield folder
    cluster("down", state=folder, check=False)
    shutil.rmtree(folder.parent, ignore_errors=True)


def test_a_job_submitted_where_no_cluster_runs_is_a_clear_error_within_10_s():
    import socket

    with socket.socket() as probe:  # a loopback port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    done = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "ray"), "job", "submit", "--address", f"http://127.0.0.1:{port}", "--", "true"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode != 0 and time.monotonic() - started <= 10
    assert f"Failed to connect to Ray at address: http://127.0.0.1:{port}" in done.stderr.strip().splitlines()[-1]


@needs_namespaces
def test_a_failed_up_leaves_nothing_behind(state):
    failed = cluster("up", state=state, check=False, LIVO_CLUSTER_RAY="/bin/false")
    assert failed.returncode != 0
    assert "head (10.247.0.10) did not start" in failed.stderr and "up failed; removing what it made" in failed.stderr
    assert left_behind() == [] and not state.exists()
    bad = cluster("up", "--workers", "0", state=state, check=False)
    assert bad.returncode != 0 and "--workers must be 1..200, got 0" in bad.stderr


@needs_namespaces
def test_a_build_job_survives_a_lost_worker_node(state, tmp_path):
    cluster("up", "--workers", "1", "--head-cpus", "2", state=state)
    cluster_id = (state / "cluster.env").read_text().split("CLUSTER_ID=")[1].split()[0]
    status = cluster("status", state=state).stdout
    assert "node head: address 10.247.0.10" in status and "node worker-1: address 10.247.0.11" in status
    assert status.split("Active:")[1].split("Pending:")[0].count("node_") == 2
    # Nothing of the cluster listens in this machine's own network namespace.
    listening = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout
    assert ":6379 " not in listening and ":8265 " not in listening

    # The job API through the `ray job` CLI, as a user drives it, with the cluster's client settings.
    exports = dict(word.split("=", 1) for word in cluster("env", state=state).stdout.replace("export ", "").split())
    env = {**os.environ, **exports}
    for name in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_ADDRESS"):
        env.pop(name, None)
    ray = str(ROOT / ".venv" / "bin" / "ray")

    def job(*args: str) -> str:
        done = subprocess.run(
            [ray, "job", args[0], "--address", exports["LIVO_CLUSTER_JOB_ADDRESS"], *args[1:]],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            cwd=ROOT,
        )
        assert done.returncode == 0 or args[0] == "status", f"ray job {args}: {done.stdout}\n{done.stderr}"
        return done.stdout + done.stderr

    def state_of(job_id: str) -> str:
        found = re.search(r"(pending|running|succeeded|failed|stopped)", job("status", job_id), re.IGNORECASE)
        return found.group(1).upper() if found else "UNKNOWN"

    config, out = tmp_path / "build.yaml", tmp_path / "pairs"
    config.write_text(BUILD)
    submit = [
        "submit",
        "--no-wait",
        "--working-dir",
        ".",
        "--runtime-env",
        "services/dataset/runtime_env.yaml",
    ]
    entrypoint = ["--", "python", "services/dataset/job.py", str(config), "-o", str(out), "--no-progress"]

    def wait(job_id: str, kill_worker: bool) -> str:
        killed = not kill_worker
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            # Mid-build: generation has stored its first pairs.
            if not killed and out.exists() and any(out.rglob("*.parquet")):
                cluster("kill-node", "worker-1", state=state)
                killed = True
            current = state_of(job_id)
            if current in ("SUCCEEDED", "FAILED", "STOPPED"):
                assert killed, (
                    f"the build ended ({current}) before the worker node was killed: {job('logs', job_id)[-2000:]}"
                )
                return current
            time.sleep(0.5)
        raise AssertionError(f"job {job_id} did not end within 240 s: {job('logs', job_id)[-3000:]}")

    job(*submit, "--submission-id", "build-1", *entrypoint)
    final, last = wait("build-1", kill_worker=True), "build-1"
    if final != "SUCCEEDED":  # a lost node may fail the job: resubmitting resumes it
        job(*submit, "--submission-id", "build-2", *entrypoint)
        final, last = wait("build-2", kill_worker=False), "build-2"
    logs = job("logs", last)
    assert final == "SUCCEEDED", logs[-3000:]
    # Progress and the summary come back through the job's logs, with the node of every actor.
    assert "verified ok" in logs and "actors     on nodes" in logs

    report = json.loads((out / "build" / "report.json").read_text())
    planned = report["stages"]["plan"]["records"]
    manifest = Manifest.load(out)
    rows = [r["record_id"] for path in manifest.files() for r in pq.read_table(path, columns=["record_id"]).to_pylist()]
    dropped = read_ledger(out)
    assert verify_shards(out).ok
    assert len(rows) == len(set(rows)), "a record was written twice"
    assert not set(rows) & set(dropped), "a record both stored and dropped"
    assert len(rows) + len(dropped) == planned, f"{planned - len(rows) - len(dropped)} planned records lost"

    cluster("down", state=state)
    assert left_behind(cluster_id) == []
