"""A service running in this process on the session's local Ray, for the tests that talk to it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def running_service(config: Any) -> Iterator[str]:
    """Serve started on a free loopback port with ``config``'s app at ``/``; yields the base URL and
    shuts Serve down afterwards, so later tests get the CPUs back."""
    from ray import serve

    from livo.runtime import free_port
    from livo.serve.app import APP_NAME, build_app

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port, "request_timeout_s": 90})
    serve.run(build_app(config), name=APP_NAME, route_prefix="/")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
