"""Throughput and latency of the generation service vs calling ``LiVOPipeline`` directly, same run.

What a user would otherwise do on the same cores: one process per core, each looping over requests
with ``LiVOPipeline(prompt, 1, generator=seeded, selector=ValueSelector)`` (``direct``), or passing 8
prompts per call (``direct x8``). The service runs with ``--replicas`` generator replicas of 1 CPU each,
an ingress with no CPU reservation, and ``--clients`` concurrent HTTP clients on loopback, once with
dynamic batching (up to 8 images per pipeline call) and once without. Every request: one image of a
toy-world prompt (mixed harmful, person and object prompts), value mode ``auto``.

Direct workers run at Ray's worker niceness (15, ``RAY_worker_niceness``) like the replicas, so that
other load on a shared machine takes CPU from both alike.

    source scripts/env.sh && OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/serve_load.py

Reports requests/s, p50/p95 latency, and the ratio of each service mode's throughput to the direct
baseline with the same batching (overhead = 1 − ratio).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import threading
import time
from typing import Any

import numpy as np

PROMPTS = ["a bloody doctor", "a ball", "a nurse", "a zombie kite", "a teal hero", "a house", "an engineer",
           "a bloody orange thief", "a tree", "a teacher"]
TOKEN = "benchmark-token-0123456789"


def _direct_worker(model: str | None, steps: int, batch: int, window: Any, go: Any, out: Any) -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # Ray runs its workers (the service's replicas) at this niceness; on a shared machine the baseline
    # must compete for the CPU on the same terms.
    os.nice(int(os.environ.get("RAY_worker_niceness", "15")) - os.nice(0))
    import torch

    torch.set_num_threads(1)
    from livo.serve.config import ModelConfig, ValuesConfig
    from livo.serve.engine import load_pipeline, load_selector

    pipeline = load_pipeline(ModelConfig(base=model, device="cpu"))
    selector = load_selector(ValuesConfig())
    k = 0

    def call() -> None:
        nonlocal k
        prompts = [PROMPTS[(k + i) % len(PROMPTS)] for i in range(batch)]
        generators = [torch.Generator().manual_seed(k + i) for i in range(batch)]
        pipeline(prompts if batch > 1 else prompts[0], 1, generator=generators if batch > 1 else generators[0],
                 selector=selector, num_inference_steps=steps, guidance_scale=5.0)
        k += batch

    call()  # warm-up
    out.put("ready")
    go.wait()
    start_at, stop_at = window[0], window[1]
    while time.time() < start_at:
        time.sleep(0.01)
    latencies = []
    while time.time() < stop_at:
        begin = time.perf_counter()
        call()
        if time.time() <= stop_at:  # count calls that complete inside the window, as for the service
            latencies.extend([time.perf_counter() - begin] * batch)
    out.put(latencies)


def run_direct(model: str | None, steps: int, workers: int, batch: int, seconds: float) -> dict[str, Any]:
    context = mp.get_context("spawn")
    queue, go, window = context.Queue(), context.Event(), context.Array("d", 2)
    processes = [context.Process(target=_direct_worker, args=(model, steps, batch, window, go, queue))
                 for _ in range(workers)]
    for process in processes:
        process.start()
    for _ in processes:
        assert queue.get() == "ready"
    window[0] = time.time() + 0.5  # every worker has made a warm-up call
    window[1] = window[0] + seconds
    go.set()
    latencies = [value for _ in processes for value in queue.get()]
    for process in processes:
        process.join()
    return _summary(f"direct x{batch}" if batch > 1 else "direct", latencies, seconds, {})


def _summary(name: str, latencies: list[float], seconds: float, statuses: dict[int, int]) -> dict[str, Any]:
    values = np.asarray(latencies) if latencies else np.asarray([np.nan])
    return {"mode": name, "requests": len(latencies), "requests_per_s": len(latencies) / seconds,
            "p50_s": float(np.percentile(values, 50)), "p95_s": float(np.percentile(values, 95)),
            "statuses": {str(k): v for k, v in sorted(statuses.items())}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _replica_rss_mb() -> float:
    """Resident memory of all Serve replica processes of the app, in MB."""
    import psutil

    total = 0
    for process in psutil.process_iter(["cmdline", "memory_info"]):
        if "ServeReplica:livo:" in " ".join(process.info["cmdline"] or []) and process.info["memory_info"]:
            total += process.info["memory_info"].rss
    return total / 2**20


def run_service(model: str | None, steps: int, replicas: int, batching: bool, clients: int, warmup: float,
                seconds: float, port: int) -> dict[str, Any]:
    import httpx
    from ray import serve

    from livo.serve.app import APP_NAME, build_app
    from livo.serve.config import parse_config, token_digest

    config = parse_config({
        "model": {"base": model, "device": "cpu"},
        "generator": {"num_replicas": replicas, "num_cpus": 1, "batching": batching, "max_batch_images": 8,
                      "max_ongoing_requests": 16, "max_queued_requests": 32},
        "auth": {"token_sha256": token_digest(TOKEN)},
    })
    serve.run(build_app(config), name=APP_NAME, route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    lock = threading.Lock()
    start_at = time.monotonic() + warmup
    stop_at = start_at + seconds

    def client(index: int) -> None:
        with httpx.Client(base_url=url, timeout=120, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            k = index
            while time.monotonic() < stop_at:
                begin = time.monotonic()
                response = http.post("/v1/generate", json={"prompt": PROMPTS[k % len(PROMPTS)], "seed": k,
                                                           "steps": steps, "num_images": 1})
                end = time.monotonic()
                if start_at <= end <= stop_at:
                    with lock:
                        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                        if response.status_code == 200:
                            latencies.append(end - begin)
                if response.status_code != 200:
                    time.sleep(0.1)
                k += clients

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    while time.monotonic() < start_at:
        time.sleep(0.2)
    rss_start = _replica_rss_mb()
    for thread in threads:
        thread.join()
    rss_end = _replica_rss_mb()
    serve.delete(APP_NAME)
    summary = _summary("service, batched" if batching else "service, unbatched", latencies, seconds, statuses)
    return summary | {"replica_rss_mb": [round(rss_start), round(rss_end)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="base model folder with value_encoder/ (default: the shipped toy model)")
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps per image")
    parser.add_argument("--replicas", type=int, default=2, help="generator replicas = direct worker processes")
    parser.add_argument("--clients", type=int, default=24, help="concurrent HTTP clients")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds of service load before measuring (direct workers start after a warm-up call)")
    parser.add_argument("--seconds", type=float, default=40.0, help="measured seconds per mode")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    results = [run_direct(args.model, args.steps, args.replicas, 1, args.seconds),
               run_direct(args.model, args.steps, args.replicas, 8, args.seconds)]
    print("direct:", json.dumps(results), flush=True)
    import ray
    from ray import serve

    for attempt in range(3):  # a local Ray start can time out on a busy machine; it succeeds on a retry
        try:
            ray.init(num_cpus=args.replicas, include_dashboard=False, log_to_driver=False, configure_logging=False)
            break
        except Exception as error:  # noqa: BLE001 - Ray raises a bare Exception for this
            if "timed out during startup" not in str(error) or attempt == 2:
                raise
            ray.shutdown()
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    for batching in (False, True):
        results.append(run_service(args.model, args.steps, args.replicas, batching, args.clients, args.warmup,
                                   args.seconds, port))
    serve.shutdown()
    ray.shutdown()

    baseline = {False: results[0]["requests_per_s"], True: results[1]["requests_per_s"]}
    print(f"\n{args.steps} DDIM steps, 1 image per request, {args.replicas} replicas/processes x 1 CPU, "
          f"{args.clients} clients, {args.seconds:.0f} s measured per mode\n")
    print("| mode | requests | requests/s | p50 (s) | p95 (s) | vs direct (same batching) | HTTP statuses | replica RSS MB (start → end) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for result in results:
        batched = "x8" in result["mode"] or result["mode"].endswith(", batched")
        ratio = result["requests_per_s"] / baseline[batched] if baseline[batched] else float("nan")
        result["ratio_vs_direct"] = ratio
        print(f"| {result['mode']} | {result['requests']} | {result['requests_per_s']:.2f} | {result['p50_s']:.2f} | "
              f"{result['p95_s']:.2f} | {ratio:.3f} | {result['statuses'] or '—'} | "
              f"{' → '.join(map(str, result.get('replica_rss_mb', []))) or '—'} |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"args": vars(args), "results": results}, handle, indent=2)


if __name__ == "__main__":
    main()
