"""Images per model CPU-second in a service replica against a direct ``LiVOPipeline`` process, both
running *at the same time* on the same cores, so this machine's speed drift (up to 60% between
phases minutes apart) hits both alike.

``serve_load.py`` splits the service's throughput into the model's share of the busy CPU (what
serving costs) and images per model CPU-second (the machine's speed, measured in separate phases).
This checks the assumption behind the split: that a CPU-second of the model makes as many images in
a replica's ``livo-generate`` thread as in a direct process. One replica (1 CPU, ``--clients``
HTTP clients, 1 image per request) and one direct process (8 prompts per call) run side by side;
each window compares images finished per CPU-second of each. Image counts are quantized by 8-image
calls, so single windows scatter by ±5%; the total over all windows is the figure.

    source scripts/env.sh && OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/serve_side_by_side.py [--proxy serve]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from typing import Any

from serve_load import _model_thread_cpu_seconds, direct_call, start_batched_service, start_clients


def _direct_loop(steps: int, images: Any) -> None:
    call = direct_call(None, steps, 8)
    while True:
        call()
        with images.get_lock():
            images.value += 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--proxy", choices=("serve", "haproxy"), default="haproxy")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds per window")
    parser.add_argument("--warmup", type=float, default=25.0)
    args = parser.parse_args()

    port = start_batched_service(args.proxy, 1)  # sets Ray's environment first, then starts it
    import psutil
    import ray
    from ray import serve

    context = mp.get_context("spawn")
    direct_images = context.Value("l", 0)
    direct = context.Process(target=_direct_loop, args=(args.steps, direct_images), daemon=True)
    direct.start()
    clients, stop, statuses, answered = start_clients(port, args.clients, args.steps)
    time.sleep(args.warmup)

    def snapshot() -> tuple[float, int, float, int]:
        return (
            sum(psutil.Process(direct.pid).cpu_times()[:2]),
            direct_images.value,
            _model_thread_cpu_seconds(),
            len(answered),
        )

    first = before = snapshot()
    for window in range(args.windows):
        time.sleep(args.seconds)
        after = snapshot()
        print(json.dumps(_compare(before, after) | {"window": window}), flush=True)
        before = after
    print(
        json.dumps(_compare(first, before) | {"window": "total", "proxy": args.proxy, "statuses": statuses}), flush=True
    )
    stop.set()
    direct.kill()
    for client in clients:  # each finishes the request it has in flight
        client.join()
    serve.shutdown()
    ray.shutdown()


def _compare(before: tuple[float, int, float, int], after: tuple[float, int, float, int]) -> dict[str, Any]:
    direct_cpu, direct_images = after[0] - before[0], after[1] - before[1]
    replica_cpu, replica_images = after[2] - before[2], after[3] - before[3]
    direct_rate, replica_rate = direct_images / direct_cpu, replica_images / replica_cpu
    return {
        "direct_cpu_s": round(direct_cpu, 2),
        "direct_images": direct_images,
        "direct_images_per_cpu_s": round(direct_rate, 3),
        "replica_model_cpu_s": round(replica_cpu, 2),
        "replica_images": replica_images,
        "replica_images_per_cpu_s": round(replica_rate, 3),
        "replica_over_direct": round(replica_rate / direct_rate, 3),
    }


if __name__ == "__main__":
    main()
