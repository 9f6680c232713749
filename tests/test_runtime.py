"""How the project starts or joins Ray: the address rules and token files, checked without a cluster;
and a local Ray started with authentication refuses a client without its token."""

import json
import os
import stat
import subprocess
import sys

import pytest

from livo.errors import ConfigError
from livo.runtime import (
    AUTH_MODE_VARIABLE,
    SINGLE_MACHINE_VARIABLE,
    TOKEN_PATH_VARIABLE,
    check_token_file,
    configure_local_ray,
    configure_ray_join,
    create_token_file,
    free_ports,
    is_loopback,
    ray_address_host,
)


def token_file(path, mode=0o600, text="0123456789abcdef"):
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("head.example", False),
    ],
)
def test_loopback_addresses_are_recognised(host, loopback):
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("address", "host"),
    [
        ("10.0.0.5:6379", "10.0.0.5"),
        ("ray://head.example:10001", "head.example"),
        ("http://127.0.0.1:8265", "127.0.0.1"),
        ("auto", None),
    ],
)
def test_the_host_of_a_ray_address(address, host):
    assert ray_address_host(address) == host


def test_free_ports_are_distinct():
    ports = free_ports(5)
    assert len(set(ports)) == 5 and all(port > 0 for port in ports)


def test_a_token_file_readable_by_others_is_refused_naming_the_file(tmp_path):
    loose = token_file(tmp_path / "token", 0o644)
    with pytest.raises(ConfigError, match=r"token: mode 0644 lets other users read the token.*chmod 600"):
        check_token_file(loose, "--ray-token-file")


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: p, "no such token file"),
        (lambda p: token_file(p, text="  \n"), "the token file is empty"),
        (lambda p: (p.mkdir(mode=0o700), p)[1], "not a regular file"),
    ],
)
def test_unusable_token_files_are_refused(tmp_path, make, words):
    with pytest.raises(ConfigError, match=words):
        check_token_file(make(tmp_path / "token"), "--ray-token-file")


def test_a_created_token_file_is_private_and_reused(tmp_path):
    path = create_token_file(tmp_path / "livo" / "token")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    token = path.read_text()
    assert len(token.strip()) == 64
    assert create_token_file(path).read_text() == token
    assert sorted(p.name for p in path.parent.iterdir()) == ["token"]  # no temp file left


def test_token_files_created_at_once_by_many_threads_are_one_whole_token(tmp_path):
    """The file was created empty, then written: a process starting in between found it empty and
    failed, and so did every later run after a kill at that moment."""
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "livo" / "token"
    with ThreadPoolExecutor(8) as pool:
        tokens = list(pool.map(lambda _: create_token_file(path).read_text(), range(32)))
    assert len(set(tokens)) == 1 and len(tokens[0].strip()) == 64


def test_a_local_ray_is_loopback_only_and_unauthenticated_unless_asked():
    environ: dict[str, str] = {}
    assert configure_local_ray(environ=environ) is None
    assert environ[SINGLE_MACHINE_VARIABLE] == "0" and environ[AUTH_MODE_VARIABLE] == "disabled"
    user_choice = {AUTH_MODE_VARIABLE: "token", TOKEN_PATH_VARIABLE: "/nonexistent"}
    with pytest.raises(ConfigError, match="no such token file"):  # the user's token mode is kept, and checked
        configure_local_ray(environ=user_choice)


def test_a_local_ray_for_a_networked_service_gets_a_created_token(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    environ: dict[str, str] = {}
    path = configure_local_ray(authenticate=True, environ=environ)
    assert environ[AUTH_MODE_VARIABLE] == "token" and environ[TOKEN_PATH_VARIABLE] == str(path)
    assert path.is_relative_to(tmp_path) and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_joining_off_loopback_without_a_token_fails_before_connecting(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ray/auth_token
    with pytest.raises(ConfigError, match="needs its auth token: pass --ray-token-file"):
        configure_ray_join("10.1.2.3:6379", environ={})
    with pytest.raises(ConfigError, match="refusing to join a cluster off loopback with RAY_AUTH_MODE=disabled"):
        configure_ray_join(
            "ray://10.1.2.3:10001", token_file=str(token_file(tmp_path / "t")), environ={AUTH_MODE_VARIABLE: "disabled"}
        )


def test_a_join_after_a_local_ray_is_not_refused_for_livo_s_own_disabled_mode(tmp_path):
    """The local start's RAY_AUTH_MODE=disabled stayed in the process environment: a later join off
    loopback in the same process (a notebook) was refused as if the user had disabled auth."""
    environ: dict[str, str] = {}
    configure_local_ray(environ=environ)
    path = token_file(tmp_path / "token")
    assert configure_ray_join("10.1.2.3:6379", token_file=str(path), environ=environ) == path
    assert environ[AUTH_MODE_VARIABLE] == "token"


def test_joining_off_loopback_with_a_token_uses_token_auth(tmp_path):
    environ: dict[str, str] = {}
    path = token_file(tmp_path / "token")
    assert configure_ray_join("10.1.2.3:6379", token_file=str(path), environ=environ) == path
    assert environ[AUTH_MODE_VARIABLE] == "token" and environ[TOKEN_PATH_VARIABLE] == str(path)


def test_joining_on_loopback_keeps_the_users_settings():
    environ = {AUTH_MODE_VARIABLE: "disabled"}
    assert configure_ray_join("127.0.0.1:6379", environ=environ) is None
    assert environ[AUTH_MODE_VARIABLE] == "disabled"


AUTHENTICATED_START = """
import os, subprocess, sys
from livo.runtime import start_ray
start_ray(None, 1, authenticate=True, token_file=sys.argv[1], log_to_driver=False)
import ray
address = ray.get_runtime_context().gcs_address
def status(environ):
    return subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "status", "--address", address],
                          env=environ, capture_output=True, text=True, timeout=120)
with_token = status(dict(os.environ))
without = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_TOKEN_PATH",)} | {"RAY_AUTH_TOKEN": "not-the-token"}
wrong = status(without)
print("NODE", ray.util.get_node_ip_address(), "WITH", with_token.returncode, "WRONG", wrong.returncode)
ray.shutdown()
"""


@pytest.mark.timeout(240)
def test_a_local_ray_started_with_authentication_refuses_a_wrong_token(tmp_path):
    path = token_file(tmp_path / "token", text=os.urandom(16).hex())
    environ = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", AUTH_MODE_VARIABLE)}
    done = subprocess.run(
        [sys.executable, "-c", AUTHENTICATED_START, str(path)], env=environ, capture_output=True, text=True, timeout=220
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "NODE 127.0.0.1 WITH 0 WRONG 1" in done.stdout, done.stdout + done.stderr[-3000:]


JOINED = """
import json, os, sys
from livo.runtime import start_ray
# What `ray job submit` hands a job's driver: the job's runtime environment, which sets one default.
job = {"runtime_env": {"env_vars": {"TOKENIZERS_PARALLELISM": "job"}}}
os.environ["RAY_JOB_CONFIG_JSON_ENV_VAR"] = json.dumps(job)
start_ray(sys.argv[1], log_to_driver=False, runtime_env={"env_vars": {"OMP_WAIT_POLICY": "ACTIVE"}})
import ray
names = ["OMP_WAIT_POLICY", "TOKENIZERS_PARALLELISM", "TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS"]
seen = ray.get(ray.remote(num_cpus=0)(lambda: {name: os.environ.get(name) for name in names}).remote())
print("WORKER", json.dumps(seen, sort_keys=True))
ray.shutdown()
del os.environ["RAY_JOB_CONFIG_JSON_ENV_VAR"]
# A local start while that cluster runs (its address is in RAY_TMPDIR's ray_current_cluster): Ray's
# own ray.init() would join it; livo starts a Ray of its own.
start_ray(None, num_cpus=1, log_to_driver=False)
print("LOCAL", ray.get_runtime_context().gcs_address)
ray.shutdown()
"""


@pytest.mark.timeout(240)
def test_workers_of_a_joined_cluster_get_the_livo_defaults_and_a_local_start_stays_local(tmp_path):
    """A worker starts from its raylet's environment, not the driver's: the driver that joins a cluster
    passes its defaults on, under the caller's runtime_env and a submitted job's. And a local start
    never joins a cluster that `ray start` left running on the machine."""
    import shutil
    import tempfile

    from livo.runtime import PROCESS_DEFAULTS, QUIET_DEFAULTS, free_port

    ray_tmp = tempfile.mkdtemp(prefix="rj", dir="/tmp")  # short: Ray's socket paths go under it
    bare = {k: v for k, v in os.environ.items() if k not in {*PROCESS_DEFAULTS, *QUIET_DEFAULTS, "RAY_ADDRESS"}}
    bare |= {SINGLE_MACHINE_VARIABLE: "0", "RAY_TMPDIR": ray_tmp}  # a one-machine cluster, on loopback
    port = free_port()
    ray = os.path.join(os.path.dirname(sys.executable), "ray")
    head = subprocess.Popen(
        [ray, "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "1"]
        + ["--include-dashboard", "false", "--disable-usage-stats"],
        env=bare,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=tmp_path,
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", JOINED, f"127.0.0.1:{port}"], env=bare, capture_output=True, text=True, timeout=180
        )
    finally:
        os.killpg(head.pid, 9)  # at once: a terminated `ray start --block` takes 30 s to stop its processes
        head.wait(timeout=60)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-3000:]
    worker = json.loads(done.stdout.split("WORKER ", 1)[1].splitlines()[0])
    assert worker == {
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "OMP_WAIT_POLICY": "ACTIVE",
        "TOKENIZERS_PARALLELISM": "job",
        "TRANSFORMERS_VERBOSITY": "error",
    }
    local = done.stdout.split("LOCAL ", 1)[1].split()[0]
    assert local.startswith("127.0.0.1:") and local != f"127.0.0.1:{port}"
