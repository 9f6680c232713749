"""Nothing the project starts listens beyond loopback: ``livo serve`` and a short ``livo build-dataset``,
each run the default way as a user would in its own process with its own local Ray, while every
listening TCP socket and every bound UDP socket of its whole process tree (Ray's GCS, raylet, agents,
workers, Serve's proxy and replicas) is listed with psutil."""

import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from livo.runtime import is_loopback

TOKEN = "exposure-test-token-0123456789"


def bound_sockets(root: psutil.Process) -> set[tuple[str, str, str, int]]:
    """(process name, TCP/UDP, address, port) of every listening TCP and bound UDP socket of ``root``
    and its descendants."""
    found = set()
    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return found
    for process in processes:
        try:
            name = process.name()
            connections = process.net_connections(kind="inet")
        except psutil.Error:
            continue
        for connection in connections:
            if connection.type == 1 and connection.status != psutil.CONN_LISTEN:  # TCP: listeners only
                continue
            address = connection.laddr.ip.removeprefix("::ffff:")
            found.add((name, "TCP" if connection.type == 1 else "UDP", address, connection.laddr.port))
    return found


def exposed(sockets):
    return sorted(s for s in sockets if not is_loopback(s[2]))


def child_environment():
    return {
        k: v
        for k, v in os.environ.items()
        if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    }


def stop(command: subprocess.Popen) -> None:
    if command.poll() is None:
        command.send_signal(signal.SIGTERM)
        try:
            command.wait(timeout=120)
        except subprocess.TimeoutExpired:
            command.kill()
            command.wait()


@pytest.mark.timeout(400)
def test_livo_serve_listens_on_loopback_only():
    import httpx

    from livo.runtime import free_port

    port = free_port()
    command = subprocess.Popen(
        [sys.executable, "-m", "livo.cli", "serve", "--port", str(port), "--replicas", "1", "--num-cpus", "1"],
        env=child_environment() | {"LIVO_SERVE_TOKEN": TOKEN},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(command.stdout.readline, "")), daemon=True).start()
    try:
        deadline = time.monotonic() + 300
        while True:
            assert command.poll() is None, f"livo serve exited with {command.returncode}: {lines[-30:]}"
            assert time.monotonic() < deadline, f"the service was not ready in 300 s: {lines[-30:]}"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json().get("ready"):
                    break
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(1.0)
        answer = httpx.post(
            f"http://127.0.0.1:{port}/v1/select",
            json={"prompts": ["a bloody nurse"]},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        sockets = bound_sockets(psutil.Process(command.pid))
    finally:
        stop(command)
    names = {s[0] for s in sockets}
    assert ("TCP", "127.0.0.1", port) in {s[1:] for s in sockets}  # the service's own port
    assert {"gcs_server", "raylet"} <= names and any(n.startswith("ray::ServeRepli") for n in names), names
    assert not exposed(sockets), exposed(sockets)


BUILD = """
sources: {{generators: {{toyworld: {{count: 200, seed: 3}}}}}}
selection: {{registry: toyworld}}
generation: {{steps: 2, samples_per_prompt: 1, value_samples: {{colour_equality: 1}}, batch_size: 8, actors: 2}}
output: {{directory: {output}, target_shard_bytes: 8192, row_group_bytes: 4096}}
progress: false
"""


@pytest.mark.timeout(400)
def test_livo_build_dataset_listens_on_loopback_only(tmp_path):
    config = tmp_path / "build.yaml"
    config.write_text(BUILD.format(output=tmp_path / "pairs"), encoding="utf-8")
    log = tmp_path / "build.log"
    with open(log, "w") as output:
        command = subprocess.Popen(
            [sys.executable, "-m", "livo.cli", "build-dataset", str(config)],
            env=child_environment(),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    sockets: set[tuple[str, str, str, int]] = set()
    try:
        root = psutil.Process(command.pid)
        deadline = time.monotonic() + 360
        while command.poll() is None:
            assert time.monotonic() < deadline, "the build did not finish in 360 s"
            sockets |= bound_sockets(root)
            time.sleep(0.25)
    finally:
        stop(command)
    assert command.returncode == 0, log.read_text()[-3000:]
    names = {s[0] for s in sockets}
    assert {"gcs_server", "raylet"} <= names and any(n.startswith("ray::") for n in names), names
    assert not exposed(sockets), exposed(sockets)
