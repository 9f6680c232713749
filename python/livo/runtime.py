"""How every process of the project starts or joins Ray, and which network addresses it uses.

Ray's control plane (GCS, raylet, object manager, workers, agents) runs any code that is sent to
it: whoever reaches one of its ports can run programs as the user who started it. So:

- **A Ray the project starts itself is bound to loopback.** :func:`start_ray` puts Ray in its
  single-machine mode (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, what Ray does on macOS and Windows):
  the node's address is 127.0.0.1 and every Ray process listens there only. The dashboard stays off.
  After the start the node's address is checked, and a node on any other address is stopped.
- **Leaving loopback needs Ray's token authentication.** Joining a cluster that is not on loopback
  (``--ray-address``, ``ray.address``, ``RAY_ADDRESS``), or starting a local Ray for a service that
  listens on the network, sets ``RAY_AUTH_MODE=token`` with a token file readable by its owner only
  (mode 0600): the one the user names, or for a local start one the project creates.
- A loopback-only Ray started for a build, a demo or a local service runs with
  ``RAY_AUTH_MODE=disabled`` in that process (and its Ray processes) only, unless the user set a mode.

Everything here must run before ``ray`` is imported in the process: Ray reads these settings once,
when it is first imported.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import socket
import stat
import sys
import tempfile
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from livo.errors import ConfigError

LOOPBACK_HOST = "127.0.0.1"
LOOPBACK_NAMES = ("127.0.0.1", "::1", "localhost")

# Ray's single-machine mode: the node's address is loopback (see the module docstring).
SINGLE_MACHINE_VARIABLE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
AUTH_MODE_VARIABLE = "RAY_AUTH_MODE"
# Set beside RAY_AUTH_MODE=disabled when livo chose it for a loopback-only Ray, so a later join (in
# this process or a child) can tell livo's choice from the user's.
AUTH_MODE_CHOSEN_VARIABLE = "LIVO_RAY_AUTH_MODE_CHOSEN"
TOKEN_PATH_VARIABLE = "RAY_AUTH_TOKEN_PATH"
TOKEN_VARIABLE = "RAY_AUTH_TOKEN"
# Where a local start that needs authentication keeps the token it creates (so `ray status` and a
# second `livo` process on this machine can use it too).
DEFAULT_TOKEN_FILE = Path("~/.cache/livo/ray-auth-token")


# Set once per process by every entry point that starts work (the CLI, ``python -m livo.train``, and
# the library calls that start processes or Ray), and inherited by what they start.
PROCESS_DEFAULTS = {
    # Idle OpenMP threads sleep instead of spinning: a job's processes (Ray actors, DeepSpeed ranks,
    # evaluation workers) share cores, and on shared cores spinning made training steps ~10x slower.
    "OMP_WAIT_POLICY": "PASSIVE",
    # No tokenizers (rayon) thread pool in worker processes.
    "TOKENIZERS_PARALLELISM": "false",
}


# Quiet by default: the third-party warnings and progress bars a user can do nothing about (a missing
# torchvision backend the project does not use, advisory notices, model-loading bars) are off in
# every process the project starts. ``livo -v`` (``LIVO_VERBOSE=1``) leaves them on.
VERBOSE_VARIABLE = "LIVO_VERBOSE"
QUIET_DEFAULTS = {
    "TRANSFORMERS_VERBOSITY": "error",
    "DIFFUSERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}


def is_verbose(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Whether third-party warnings and loading bars were asked for (``livo -v``)."""
    return environ.get(VERBOSE_VARIABLE, "") not in ("", "0")


def apply_process_defaults(environ: MutableMapping[str, str] = os.environ) -> None:
    """Sets each of :data:`PROCESS_DEFAULTS` (and, unless verbose, :data:`QUIET_DEFAULTS`) unless the
    environment has it already. It must run before the first OpenMP parallel region of the process
    (torch's first op) and before transformers or diffusers are imported to take effect there, and
    before child processes start, which inherit it."""
    defaults = PROCESS_DEFAULTS if is_verbose(environ) else PROCESS_DEFAULTS | QUIET_DEFAULTS
    for name, value in defaults.items():
        environ.setdefault(name, value)


# Set by ``ray job submit`` in a job's driver: the job's runtime environment, as JSON.
JOB_CONFIG_VARIABLE = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def cluster_runtime_env(runtime_env: dict[str, Any] | None, environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """``runtime_env`` with this process's livo defaults (:data:`PROCESS_DEFAULTS`,
    :data:`QUIET_DEFAULTS`, ``LIVO_VERBOSE``, as they are set here) added to its ``env_vars``, for a
    driver that joins a cluster.

    Workers on the cluster's nodes start from their own raylet's environment, not from the driver's,
    so without this the actors and Serve replicas there ran with spinning OpenMP threads and the
    third-party noise. A name that ``runtime_env`` sets keeps its value there, and names a submitted
    job's runtime environment sets are left out (Ray refuses a driver's variable that repeats the
    job's)."""
    names = [*PROCESS_DEFAULTS, *QUIET_DEFAULTS, VERBOSE_VARIABLE]
    job = json.loads(environ.get(JOB_CONFIG_VARIABLE) or "{}").get("runtime_env") or {}
    taken = set(job.get("env_vars") or {})
    merged = dict(runtime_env or {})
    own = dict(merged.get("env_vars") or {})
    merged["env_vars"] = {name: environ[name] for name in names if name in environ and name not in taken} | own
    return merged


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is a loopback address."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports nothing listens on now on loopback (the OS's picks, all held open
    together so they differ; another process could still take one before use)."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind((LOOPBACK_HOST, 0))
        return [int(probe.getsockname()[1]) for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def free_port() -> int:
    """One port as :func:`free_ports` picks them."""
    return free_ports(1)[0]


def ray_address_host(address: str) -> str | None:
    """The host of a Ray address (``host:port``, ``ray://host:port``, ``http://host:port``), or None
    where it names no host (``auto``: the cluster this machine belongs to)."""
    if address in ("auto", "local"):
        return None
    parts = urlsplit(address if "://" in address else f"ray://{address}")
    if not parts.hostname:
        raise ConfigError(f"Ray address {address!r}: expected host:port, ray://host:port or auto")
    return parts.hostname


def check_token_file(path: str | os.PathLike[str], source: str) -> Path:
    """``path`` as a usable Ray token file: a non-empty regular file that only its owner can read
    or write (mode 0600 or stricter). ``source`` names where the path came from, for the message."""
    file = Path(path).expanduser()
    try:
        info = file.stat()
    except FileNotFoundError:
        raise ConfigError(f"{source} {file}: no such token file") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{source} {file}: not a regular file")
    if info.st_mode & 0o077:
        raise ConfigError(
            f"{source} {file}: mode {stat.S_IMODE(info.st_mode):04o} lets other users read "
            f"the token; make it readable by its owner only (chmod 600 {file})"
        )
    if info.st_uid != os.getuid():
        raise ConfigError(f"{source} {file}: owned by another user (uid {info.st_uid})")
    if not file.read_text(encoding="utf-8").strip():
        raise ConfigError(f"{source} {file}: the token file is empty")
    return file


def create_token_file(path: str | os.PathLike[str] = DEFAULT_TOKEN_FILE) -> Path:
    """A token file at ``path`` (mode 0600 in a 0700 folder), created with a new random token unless
    it exists, in which case it is checked as :func:`check_token_file` does."""
    file = Path(path).expanduser()
    file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if file.exists():
        return check_token_file(file, "Ray token file")
    # Written whole to a private temp file, then linked into place (which fails if the name exists):
    # a process starting at the same moment, or a run killed midway, never finds an empty file.
    fd, temp = tempfile.mkstemp(prefix=f".{file.name}.", dir=file.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(secrets.token_hex(32) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temp, file)
        except FileExistsError:
            return check_token_file(file, "Ray token file")  # another process made it first
    finally:
        os.unlink(temp)
    return file


def _use_token(token_file: str | None, environ: MutableMapping[str, str], create: bool) -> Path | None:
    """Sets token authentication in ``environ``; returns the token file in use (None when the token
    itself is in ``RAY_AUTH_TOKEN``)."""
    environ[AUTH_MODE_VARIABLE] = "token"
    if token_file is not None:
        file = check_token_file(token_file, "--ray-token-file")
    elif environ.get(TOKEN_PATH_VARIABLE):
        file = check_token_file(environ[TOKEN_PATH_VARIABLE], TOKEN_PATH_VARIABLE)
    elif environ.get(TOKEN_VARIABLE):
        return None
    elif create:
        file = create_token_file()
    else:
        default = Path("~/.ray/auth_token").expanduser()
        if not default.exists():
            raise ConfigError(
                "joining a Ray cluster off loopback needs its auth token: pass --ray-token-file "
                f"(ray.token_file in a build config) or set {TOKEN_PATH_VARIABLE}"
            )
        file = check_token_file(default, "Ray's default token file")
    environ[TOKEN_PATH_VARIABLE] = str(file)
    return file


def configure_local_ray(
    authenticate: bool = False, token_file: str | None = None, environ: MutableMapping[str, str] = os.environ
) -> Path | None:
    """Settings for a Ray that this process starts on this machine: bound to loopback, and with token
    authentication when ``authenticate`` (a service that listens on the network), a token file is
    given, or the user set ``RAY_AUTH_MODE=token``. Returns the token file in use, if any."""
    environ[SINGLE_MACHINE_VARIABLE] = "0"
    # A driver started by `uv run` would otherwise have Ray start local workers with `uv run` too,
    # from a folder where it resolves another environment.
    environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    mode = environ.get(AUTH_MODE_VARIABLE)
    if authenticate or token_file is not None or mode == "token":
        return _use_token(token_file, environ, create=True)
    if mode is None:
        # Every port of this Ray is on loopback (checked after the start), so only this machine's own
        # processes can reach it. Token auth would make Ray write a token file on first use and
        # require it of every `ray` command; set RAY_AUTH_MODE=token to have it anyway.
        environ[AUTH_MODE_VARIABLE] = "disabled"
        environ[AUTH_MODE_CHOSEN_VARIABLE] = "disabled"
    return None


def configure_ray_join(
    address: str, token_file: str | None = None, environ: MutableMapping[str, str] = os.environ
) -> Path | None:
    """Settings for joining the running Ray cluster at ``address``. Off loopback (or where the address
    names no host, ``auto``) the connection uses token authentication: the token file given, Ray's
    ``RAY_AUTH_TOKEN_PATH`` / ``RAY_AUTH_TOKEN``, or ``~/.ray/auth_token``; an explicit
    ``RAY_AUTH_MODE=disabled`` is refused. Returns the token file in use, if any."""
    environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    host = ray_address_host(address)
    on_loopback = host is not None and is_loopback(host)
    if environ.get(AUTH_MODE_CHOSEN_VARIABLE) == environ.get(AUTH_MODE_VARIABLE) == "disabled":
        # livo's own choice for an earlier local Ray (a notebook that built a dataset locally, then
        # joins a cluster), not the user's: it says nothing about this cluster.
        del environ[AUTH_MODE_VARIABLE], environ[AUTH_MODE_CHOSEN_VARIABLE]
    mode = environ.get(AUTH_MODE_VARIABLE)
    if mode == "disabled" and not on_loopback:
        raise ConfigError(
            f"Ray address {address}: refusing to join a cluster off loopback with "
            f"{AUTH_MODE_VARIABLE}=disabled; start the cluster with {AUTH_MODE_VARIABLE}=token "
            "and give its token (--ray-token-file)"
        )
    if on_loopback and token_file is None and mode != "token":
        return None
    if mode is None and host is None and token_file is None and not _token_available(environ):
        # `auto`: the cluster this machine belongs to; its own settings say whether it wants a token.
        return None
    return _use_token(token_file, environ, create=False)


def _token_available(environ: MutableMapping[str, str]) -> bool:
    return bool(
        environ.get(TOKEN_PATH_VARIABLE)
        or environ.get(TOKEN_VARIABLE)
        or Path("~/.ray/auth_token").expanduser().exists()
    )


def check_ray_settings(address: str | None, token_file: str | None = None) -> None:
    """Raises the error :func:`start_ray` would raise for these settings before it connects (a missing or
    unsafe token file, an unauthenticated join off loopback), without changing this process's
    environment: for commands that check their inputs before long work."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    environ = dict(os.environ)
    if address in (None, "local"):
        if token_file is not None:
            check_token_file(token_file, "--ray-token-file")
    else:
        configure_ray_join(str(address), token_file, environ)


def start_ray(
    address: str | None = None,
    num_cpus: int | None = None,
    *,
    authenticate: bool = False,
    token_file: str | None = None,
    attempts: int = 3,
    log_to_driver: bool = True,
    runtime_env: dict[str, Any] | None = None,
    object_store_memory: int | None = None,
) -> Path | None:
    """Starts a local Ray (``address`` None and no ``RAY_ADDRESS``) bound to loopback, or joins the
    cluster at ``address``, with the settings above. A local start that timed out on a loaded machine
    is retried: Ray 2.60's raylet gives its dashboard agent a fixed 15 s to start
    (ray-project/ray#65983). ``log_to_driver=False`` keeps the workers' output out of this process's;
    ``runtime_env`` and ``object_store_memory`` (a local Ray's) are ``ray.init``'s. Returns the auth token file in use, if any."""
    apply_process_defaults()  # Ray's workers inherit them
    address = address or os.environ.get("RAY_ADDRESS") or None
    local = address in (None, "local")
    if local:
        token = configure_local_ray(authenticate, token_file)
    else:
        token = configure_ray_join(str(address), token_file)
    if "ray" in sys.modules:
        _apply_import_time_settings(local)
    if not local:
        runtime_env = cluster_runtime_env(runtime_env)
    import ray

    for attempt in range(1, attempts + 1):
        try:
            ray.init(
                # "local", not None: ray.init() without an address joins the cluster a `ray start`
                # on this machine left in ray_current_cluster, whoever started it.
                address="local" if local else address,
                num_cpus=num_cpus if local else None,
                include_dashboard=False,
                log_to_driver=log_to_driver,
                configure_logging=False,
                runtime_env=runtime_env,
                object_store_memory=object_store_memory if local else None,
            )
            break
        except OSError as error:
            if "AF_UNIX path length" in str(error):
                raise ConfigError(
                    f"Ray cannot start: its socket paths under the temporary folder would be too long "
                    f"({error}); set RAY_TMPDIR (or TMPDIR) to a short folder such as /tmp"
                ) from None
            raise
        except Exception as error:  # Ray raises a bare Exception for this
            if not local or "timed out during startup" not in str(error) or attempt == attempts:
                raise
            print(f"livo: Ray did not start (attempt {attempt}/{attempts}): {error}; retrying", file=sys.stderr)
            ray.shutdown()
            _stop_ray_children()
    node_address = ray.util.get_node_ip_address()
    if not is_loopback(node_address):
        if local:
            ray.shutdown()
            raise RuntimeError(
                f"the local Ray started on {node_address}, not on loopback; "
                f"{SINGLE_MACHINE_VARIABLE}=0 must be set before ray is first imported"
            )
        if os.environ.get(AUTH_MODE_VARIABLE) != "token":  # Ray sets it when it finds a token to use
            ray.shutdown()
            raise ConfigError(
                f"Ray address {address}: the cluster is on {node_address}, off loopback, and this "
                "connection has no auth token; start the cluster with RAY_AUTH_MODE=token and give "
                "its token (--ray-token-file or RAY_AUTH_TOKEN_PATH)"
            )
    return token


def _apply_import_time_settings(local: bool) -> None:
    """Ray was imported before :func:`configure_local_ray` (or :func:`configure_ray_join`) ran: the
    constants it reads from the environment only at import are set to the same values here."""
    from ray._private import ray_constants

    if local:
        ray_constants.ENABLE_RAY_CLUSTER = os.environ.get(SINGLE_MACHINE_VARIABLE) != "0"
    ray_constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV = os.environ.get("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "1") not in (
        "0",
        "false",
        "False",
    )


def _stop_ray_children() -> None:
    """Stops the Ray processes a failed local start left behind (``ray.shutdown`` does not: its GCS,
    monitors and raylet would pile up with every attempt). Only children of this process."""
    import psutil

    for child in psutil.Process().children(recursive=True):
        try:
            command = " ".join(child.cmdline())
            if "site-packages/ray/" in command or "/ray/core/src/ray/" in command:
                child.kill()
        except psutil.Error:
            continue
