"""Cluster mode on a real two-node cluster on this machine (`scripts/cluster.sh`): each node in its
own network namespace, a dataset build submitted through the job API, a worker node killed mid-build,
DeepSpeed training across one launcher per node (a node lost, the run resumed bit for bit, a
rendezvous that never completes), the service losing a node (503s for the requests it held, the rest
answered, replicas replaced, /metrics showing the loss), a lost node started again, and nothing left
behind by `down`, even after a failed `up`.

The scenarios share one cluster (bringing one up and down costs about 25 s): each loses worker-1, and
the next one that needs Ray there starts it again (`start-node`), as a node that comes back after a
failure would."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from livo.data.shards import Manifest, verify_shards
from livo.dataset.sink import read_ledger
from livo.runtime import QUIET_DEFAULTS

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
        found += [f"process {pid}" for pid in cluster_processes(cluster_id)]
    return found


def cluster_processes(cluster_id: str, command_part: bytes = b"", node: str | None = None) -> list[str]:
    """PIDs of the processes that carry the cluster's marker (and ``command_part`` in their command
    line; of one ``node`` when given)."""
    found = []
    for pid in os.listdir("/proc"):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if f"LIVO_CLUSTER={cluster_id}".encode() in environ and command_part in command:
            if node is None or f"LIVO_CLUSTER_NODE={node}".encode() in environ:
                found.append(pid)
    return found


def cluster_id_of(state: Path) -> str:
    return (state / "cluster.env").read_text().split("CLUSTER_ID=")[1].split()[0]


def state_folder() -> Path:
    import tempfile

    # Short: Ray's socket paths under it must stay within AF_UNIX's 107 bytes.
    return Path(tempfile.mkdtemp(prefix="lc", dir="/tmp")) / "c"


@pytest.fixture
def fresh_state():
    folder = state_folder()
    yield folder
    cluster("down", state=folder, check=False)
    shutil.rmtree(folder.parent, ignore_errors=True)


# A generator busy on a shared core answers Serve's queue-length probe later than its 0.1 s deadline,
# and the ingress then holds requests for the other one; the nodes' processes get a wider deadline.
SERVE_DEADLINES = {
    "RAY_SERVE_QUEUE_LENGTH_RESPONSE_DEADLINE_S": "2",
    "RAY_SERVE_MAX_QUEUE_LENGTH_RESPONSE_DEADLINE_S": "2",
}


@pytest.fixture(scope="module")
def two_nodes():
    """A head with 2 CPUs and one worker with 1, for every scenario of this module."""
    folder = state_folder()
    try:
        cluster("up", "--workers", "1", "--head-cpus", "2", state=folder, **SERVE_DEADLINES)
        yield folder
    finally:
        cluster("down", state=folder, check=False)
        shutil.rmtree(folder.parent, ignore_errors=True)


@pytest.fixture
def state(two_nodes):
    """The shared cluster with both nodes running: a worker an earlier scenario killed is started again."""
    if not cluster_processes(cluster_id_of(two_nodes), b"", node="worker-1"):
        started = cluster("start-node", "worker-1", state=two_nodes, **SERVE_DEADLINES)
        assert "2 nodes active" in started.stdout, started.stdout
    return two_nodes


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
def test_a_failed_up_leaves_nothing_behind(fresh_state):
    # (Runs before the shared cluster is up: it checks that no cluster's namespace or link is left.)
    failed = cluster("up", state=fresh_state, check=False, LIVO_CLUSTER_RAY="/bin/false")
    assert failed.returncode != 0
    assert "head (10.247.0.10) did not start" in failed.stderr and "up failed; removing what it made" in failed.stderr
    assert left_behind() == [] and not fresh_state.exists()
    bad = cluster("up", "--workers", "0", state=fresh_state, check=False)
    assert bad.returncode != 0 and "--workers must be 1..200, got 0" in bad.stderr


@needs_namespaces
def test_a_build_job_survives_a_lost_worker_node(state, tmp_path):
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


# Two nodes, one rank each, meeting at a static rendezvous on the head's address (torchrun's flags
# as a user types them on a real cluster; `scripts/cluster.sh exec` runs each launcher on its node).
TRAIN = """\
learning_rate: 1.0e-3
micro_batch_size: 4
max_steps: 80
checkpoint_every: 5
threads: 1
progress: false
shuffle_buffer: 16
tensorboard: false
"""


def launcher(node: str, node_rank: int, config: Path, output: Path, state: Path, *extra: str, timeout: int = 60):
    env = {**os.environ, "LIVO_CLUSTER_DIR": str(state), "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "DS_ACCELERATOR", *QUIET_DEFAULTS):
        env.pop(name, None)
    command = [
        *("bash", str(CLUSTER), "exec", node, "--", sys.executable, "-m", "torch.distributed.run"),
        *("--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(node_rank)),
        *("--master-addr", "10.247.0.10", "--master-port", "29500", "--rdzv-conf", f"timeout={timeout}"),
        *("-m", "livo.train", str(config), "--output", str(output), *extra),
    ]
    log = (output.parent / f"{output.name}-{node}.log").open("a")
    return subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


def metrics(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]


@needs_namespaces
def test_training_across_two_nodes_resumes_bit_identically_after_a_node_is_lost(two_nodes, tmp_path):
    import torch
    from safetensors.torch import load_file

    from livo.toyworld.pairs import PairsConfig, write_pairs

    # The launchers need the nodes' namespaces, not Ray: a worker node an earlier scenario killed is
    # not started again for this one.
    state = two_nodes

    cluster_id = cluster_id_of(state)
    pairs = tmp_path / "pairs"
    write_pairs(PairsConfig(output=str(pairs), bias_per_subject=3, harm_per_prompt=1, seed=1, row_group_bytes=4096))
    config = tmp_path / "run.yaml"
    config.write_text(TRAIN + f"dataset: {pairs}\n")

    # A rendezvous the second node never joins: the head's launcher fails after its timeout, no rank
    # was started, nothing is left running.
    started = time.monotonic()
    alone = launcher("head", 0, config, tmp_path / "alone", state, timeout=5)
    assert alone.wait(timeout=120) != 0
    assert time.monotonic() - started < 30
    log = (tmp_path / "alone-head.log").read_text()
    assert "waiting for clients. 1/2 clients joined" in log, log[-3000:]
    assert cluster_processes(cluster_id, b"livo.train") == []

    def both(output: Path, *extra: str) -> list[int]:
        started = [launcher(node, k, config, output, state, *extra) for k, node in enumerate(("head", "worker-1"))]
        return [process.wait(timeout=300) for process in started]

    # Interrupted: once the first checkpoint is complete, the worker node dies (launcher and rank).
    interrupted = tmp_path / "interrupted"
    started = [launcher(node, k, config, interrupted, state) for k, node in enumerate(("head", "worker-1"))]
    latest, deadline = interrupted / "checkpoints" / "latest", time.monotonic() + 240
    while not latest.exists():
        assert time.monotonic() < deadline and started[0].poll() is None, (
            interrupted.parent / "interrupted-head.log"
        ).read_text()[-3000:]
        time.sleep(0.05)
    cluster("kill-node", "worker-1", state=state)
    # The head's rank sees its peer gone and fails with the peer's address; its launcher ends.
    assert started[0].wait(timeout=120) != 0
    started[1].wait(timeout=30)
    head_log = (tmp_path / "interrupted-head.log").read_text()
    assert "Connection reset by peer" in head_log or "Connection closed by peer" in head_log, head_log[-3000:]
    assert cluster_processes(cluster_id, b"livo.train") == []
    stopped_at = len(metrics(interrupted))
    assert 5 <= stopped_at < 80, f"the worker was killed after the run ended ({stopped_at} steps)"

    # Resumed on both nodes from the latest complete checkpoint, then a run never interrupted.
    assert both(interrupted, "--resume") == [0, 0], (tmp_path / "interrupted-head.log").read_text()[-3000:]
    assert "resumed from" in (tmp_path / "interrupted-head.log").read_text()
    whole = tmp_path / "whole"
    assert both(whole) == [0, 0], (tmp_path / "whole-head.log").read_text()[-3000:]

    continued, reference = metrics(interrupted), metrics(whole)
    assert [r["step"] for r in continued] == list(range(1, 81))
    assert [r["loss"] for r in continued] == [r["loss"] for r in reference]
    assert json.loads((whole / "run_summary.json").read_text())["world_size"] == 2
    resumed_weights = load_file(interrupted / "value_encoder" / "model.safetensors")
    reference_weights = load_file(whole / "value_encoder" / "model.safetensors")
    assert resumed_weights.keys() == reference_weights.keys()
    assert all(torch.equal(resumed_weights[name], reference_weights[name]) for name in reference_weights)


SERVICE = "http://10.247.0.10:8000"


@needs_namespaces
def test_the_service_on_two_nodes_keeps_answering_when_a_node_is_lost(state, tmp_path):
    import secrets
    import threading

    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    token = tmp_path / "service-token"
    token.write_text(secrets.token_urlsafe(24))
    token.chmod(0o600)
    headers = {"Authorization": f"Bearer {token.read_text()}"}
    # The split layout: an HTTP ingress on each node (a node's proxy prefers its own), two generators.
    import yaml

    settings = yaml.safe_load((ROOT / "services" / "serve" / "toy.yaml").read_text())
    settings["applications"][0]["args"]["ingress"] |= {"num_replicas": 2, "max_replicas_per_node": 1}
    # Two requests at a time per generator: a burst of requests then keeps both nodes' generators busy.
    settings["applications"][0]["args"]["generator"]["max_ongoing_requests"] = 2
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump(settings))
    log = tmp_path / "serve.log"
    command = [
        *("bash", str(CLUSTER), "exec", "head", "--", str(ROOT / ".venv" / "bin" / "livo"), "serve"),
        *("--config", str(config), "--layout", "split", "--replicas", "2"),
        *("--host", "0.0.0.0", "--port", "8000", "--token-file", str(token)),
        *("--ray-address", "10.247.0.10:6379", "--ray-token-file", str(state / "token")),
    ]
    env = {**os.environ, "LIVO_CLUSTER_DIR": str(state), "HF_HUB_OFFLINE": "1"}
    service = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT)

    def census() -> dict[tuple[str, str, str], float]:
        text = httpx.get(f"{SERVICE}/metrics", headers=headers, timeout=10).text
        return {
            (
                sample.name,
                sample.labels.get("deployment", sample.labels.get("endpoint", "")),
                sample.labels.get("node", ""),
            ): sample.value
            for family in text_string_to_metric_families(text)
            if family.name.startswith(("livo_serve_replica",))
            for sample in family.samples
        }

    def until(condition, seconds: float, what: str):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert service.poll() is None, log.read_text()[-3000:]
            try:
                found = condition()
            except httpx.HTTPError:
                found = None
            if found:
                return found
            time.sleep(0.5)
        raise AssertionError(f"{what} not within {seconds} s: {log.read_text()[-3000:]}")

    def generate(seed: int, images: int = 1, steps: int = 4) -> httpx.Response:
        body = {"prompt": f"a doctor number {seed}", "seed": seed, "num_images": images, "steps": steps}
        return httpx.post(f"{SERVICE}/v1/generate", json=body, headers=headers, timeout=60)

    try:
        until(
            lambda: (r := httpx.get(f"{SERVICE}/healthz", timeout=5)).status_code == 200 and r.json()["ready"],
            240,
            "the service ready",
        )
        for seed in range(4):
            assert generate(seed).status_code == 200
        # Both nodes hold a generator replica (the census names each live replica's node).
        placed = until(
            lambda: (c := census()).get(("livo_serve_replicas", "Generator", "10.247.0.11")) and c,
            60,
            "a generator on each node",
        )
        assert placed[("livo_serve_replicas", "Generator", "10.247.0.10")] == 1
        assert placed[("livo_serve_replicas", "Ingress", "10.247.0.10")] == 1

        # Requests in flight when the worker node dies: each ends, none hangs; those its generator held
        # get 503 and say why; the others are answered.
        answers: list[tuple[int, str, float]] = []

        def call(seed: int) -> None:
            started = time.monotonic()
            try:
                response = generate(100 + seed, images=8, steps=50)
                answers.append((response.status_code, response.text[:200], time.monotonic() - started))
            except httpx.HTTPError as error:
                answers.append((0, repr(error), time.monotonic() - started))

        callers = [threading.Thread(target=call, args=(seed,)) for seed in range(10)]
        for caller in callers:
            caller.start()
        time.sleep(1.5)
        cluster("kill-node", "worker-1", state=state)
        for caller in callers:
            caller.join(timeout=90)
        assert len(answers) == 10 and all(seconds < 60 for *_, seconds in answers), answers
        assert {status for status, *_ in answers} <= {200, 503}, answers
        lost = [text for status, text, _ in answers if status == 503]
        assert lost and all("was lost (its process or node ended); retry" in text for text in lost), answers

        # The service keeps answering; the lost generator is replaced on the head, and /metrics shows it.
        # The census is read from a gauge each replica refreshes, so the lost node's series may outlive
        # the replacement by one refresh: the wait is for both (a series that never goes fails it).
        until(lambda: all(generate(seed).status_code == 200 for seed in range(3)), 60, "answers after the loss")
        after = until(
            lambda: (
                (c := census()).get(("livo_serve_replicas", "Generator", "10.247.0.10")) == 2
                and ("livo_serve_replicas", "Generator", "10.247.0.11") not in c
                and c
            ),
            120,
            "both generators on the head and none listed on the lost node",
        )
        assert after[("livo_serve_replicas_lost_total", "Generator", "10.247.0.11")] >= 1
        assert after[("livo_serve_replica_lost_requests_total", "generate", "")] == len(lost)
    finally:
        service.terminate()
        service.wait(timeout=60)


@needs_namespaces
def test_a_lost_node_started_again_rejoins_and_down_leaves_nothing_behind(state):
    """Run after the scenarios above, each of which lost worker-1: the ``state`` fixture started it
    again (``start-node``) before each of them and before this test."""
    cluster_id = cluster_id_of(state)
    refused = cluster("start-node", "worker-1", state=state, check=False)
    assert refused.returncode != 0 and "start-node: worker-1 is running; kill-node worker-1 first" in refused.stderr
    assert "no node worker-2 in this cluster" in cluster("start-node", "worker-2", state=state, check=False).stderr
    # The node is back as Ray sees it: one node per address, with the worker's CPU and resource.
    status = cluster("status", state=state).stdout
    assert status.split("Active:")[1].split("Pending:")[0].count("node_") == 2
    assert "/3.0 CPU" in status and "/1.0 livo_worker_1" in status, status

    cluster("down", state=state)
    assert left_behind(cluster_id) == [] and not state.exists()
