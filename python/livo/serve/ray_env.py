"""Ray Serve settings that ``livo serve`` applies before it starts Ray, and why.

Measured on the toy world (2 generator replicas on 2 cores, ``benchmarks/serve_load.py``): Ray and
Serve's own processes took 0.25 of the 2 cores at saturation. The cores they take are cores the
model replicas lose, so the service fell to 0.73–0.82 of calling ``LiVOPipeline`` directly.
These two settings cut that overhead (numbers in ``docs/benchmarks.md``, "Serving"):

- ``RAY_SERVE_USE_GRPC_BY_DEFAULT=1``: deployment handles (ingress → generator) send requests over
  gRPC straight to the replica instead of as Ray actor tasks.
- ``RAY_SERVE_CONTROL_LOOP_INTERVAL_S=1``: the Serve controller reconciles once a second instead of
  ten times. It then reacts to a dead replica or a config change up to a second later.

They are defaults: a value already in the environment wins. They must be set before Ray starts
(``ray.init`` or ``ray start``), since Ray's processes read them when they start.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

SERVE_ENVIRONMENT: dict[str, str] = {
    "RAY_SERVE_USE_GRPC_BY_DEFAULT": "1",
    "RAY_SERVE_CONTROL_LOOP_INTERVAL_S": "1",
}


def apply_serve_environment(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Sets each of :data:`SERVE_ENVIRONMENT` unless already set; returns the values now in effect."""
    for name, value in SERVE_ENVIRONMENT.items():
        environ.setdefault(name, value)
    return {name: environ[name] for name in SERVE_ENVIRONMENT}
