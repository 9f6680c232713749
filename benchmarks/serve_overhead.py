"""Ray Serve's own costs in the generation service, with the model out of the way.

Two measurements on one running service (the shipped toy world, ``--replicas`` × 1 CPU):

- **idle**: CPU of each kind of process while no request arrives (what Ray and Serve spend per second
  whatever the load);
- **HTTP path**: CPU per request for ``GET /v1/values`` from ``--clients`` keep-alive clients as fast as
  they go; the route authenticates and answers from memory, so this is the proxy → replica → response
  path every request pays before any model work.

At a request rate R, the service loses ``idle + R × per-request`` cores to them; ``serve_load.py``
measures the whole.

    source scripts/env.sh && .venv/bin/python benchmarks/serve_overhead.py
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time

from serve_load import TOKEN, _cpu_seconds_by_role, service_config, start_serve


def _cores_between(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    return {role: round((after[role] - before[role]) / seconds, 4) for role in after}


def _hammer(port: int, clients: int, stop_at: float, counter: list[int], lock: threading.Lock) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    while time.monotonic() < stop_at:
        connection.request("GET", "/v1/values", headers={"Authorization": f"Bearer {TOKEN}"})
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"GET /v1/values answered {response.status}")
        with lock:
            counter[0] += 1
    connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layout", choices=("combined", "split"), default="combined")
    parser.add_argument(
        "--proxy",
        choices=("serve", "haproxy"),
        default="serve",
        help="what receives HTTP connections (livo serve --proxy)",
    )
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds of each part")
    args = parser.parse_args()

    import ray
    from ray import serve

    from livo.serve.app import APP_NAME, build_app

    port = start_serve(args.proxy, args.replicas)
    serve.run(build_app(service_config(args.replicas, layout=args.layout)), name=APP_NAME, route_prefix="/")

    time.sleep(5.0)  # start-up work settles
    before = _cpu_seconds_by_role()
    time.sleep(args.seconds)
    idle = _cores_between(before, _cpu_seconds_by_role(), args.seconds)

    counter, lock = [0], threading.Lock()
    stop_at = time.monotonic() + 3.0 + args.seconds
    threads = [
        threading.Thread(target=_hammer, args=(port, args.clients, stop_at, counter, lock)) for _ in range(args.clients)
    ]
    for thread in threads:
        thread.start()
    time.sleep(3.0)  # connections open, replicas warm
    before, served_before = _cpu_seconds_by_role(), counter[0]
    time.sleep(args.seconds)
    after, served = _cpu_seconds_by_role(), counter[0] - served_before
    for thread in threads:
        thread.join()
    serve.shutdown()
    ray.shutdown()

    per_request_ms = {role: round(1000 * (after[role] - before[role]) / served, 2) for role in after}
    service_roles = [r for r in per_request_ms if r not in ("http clients", "other")]
    print(
        json.dumps(
            {
                "layout": args.layout,
                "proxy": args.proxy,
                "replicas": args.replicas,
                "idle_cores": idle,
                "idle_service_cores": round(sum(idle[r] for r in service_roles), 3),
                "http_requests_per_s": round(served / args.seconds, 1),
                "http_cpu_ms_per_request": per_request_ms,
                "http_service_ms_per_request": round(sum(per_request_ms[r] for r in service_roles), 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
