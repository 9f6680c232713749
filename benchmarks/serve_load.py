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
baseline with the same batching (overhead = 1 − ratio). Also the mean images per pipeline call and
the images per second *inside* those calls, per worker or replica: throughput is workers × that rate ×
the share of time a call runs, so a lower ratio can be told apart as slower calls, gaps between calls
or smaller batches.
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
    name = f"direct x{batch}" if batch > 1 else "direct"
    return _summary(name, latencies, seconds, {}) | _call_stats([(float(batch), t) for t in latencies])


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


def _cpu_seconds_by_role() -> dict[str, float]:
    """CPU seconds used so far by each kind of process on the machine: the generator replicas, the
    ingress, Serve's proxy and controller, Ray's own processes, this process (the HTTP clients) and
    everything else."""
    import psutil

    me = os.getpid()
    totals = {"generator replicas": 0.0, "ingress": 0.0, "serve proxy": 0.0, "serve controller": 0.0,
              "ray core (raylet, gcs, agents)": 0.0, "http clients": 0.0, "other": 0.0}
    for process in psutil.process_iter(["pid", "cmdline"]):
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        command = " ".join(process.info["cmdline"] or [])
        if process.info["pid"] == me:
            role = "http clients"
        elif "ServeReplica:livo:Generator" in command:
            role = "generator replicas"
        elif "ServeReplica:livo:Ingress" in command:
            role = "ingress"
        elif "ProxyActor" in command:
            role = "serve proxy"
        elif "ServeController" in command:
            role = "serve controller"
        elif "ray" in command:
            role = "ray core (raylet, gcs, agents)"
        else:
            role = "other"
        totals[role] += times.user + times.system
    return totals


def _client(url: str, clients: int, index: int, steps: int, start_at: float, stop_at: float,
            statuses: dict[int, int], latencies: list[float], calls: list[tuple[float, float]],
            lock: threading.Lock) -> None:
    """One closed-loop client on a keep-alive connection (``http.client``: a few hundred µs of CPU per
    request, so the load generator takes little from the cores it shares with the service)."""
    import http.client
    from urllib.parse import urlsplit

    host = urlsplit(url)
    connection = http.client.HTTPConnection(host.hostname, host.port, timeout=120)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    k = index
    while time.monotonic() < stop_at:
        body = json.dumps({"prompt": PROMPTS[k % len(PROMPTS)], "seed": k, "steps": steps, "num_images": 1})
        begin = time.monotonic()
        connection.request("POST", "/v1/generate", body=body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        end = time.monotonic()
        if start_at <= end <= stop_at:
            timings = json.loads(payload)["timings"] if response.status == 200 else {}
            with lock:
                statuses[response.status] = statuses.get(response.status, 0) + 1
                if response.status == 200:
                    latencies.append(end - begin)
                    calls.append((timings["batch_images"], timings["generate_s"]))
        if response.status != 200:
            time.sleep(0.1)
        k += clients
    connection.close()


def run_service(model: str | None, steps: int, replicas: int, batching: bool, clients: int, warmup: float,
                seconds: float, port: int) -> dict[str, Any]:
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
    calls: list[tuple[float, float]] = []  # (images, seconds) of the pipeline call, once per request
    lock = threading.Lock()
    start_at = time.monotonic() + warmup
    stop_at = start_at + seconds

    threads = [threading.Thread(target=_client, args=(url, clients, i, steps, start_at, stop_at, statuses,
                                                      latencies, calls, lock)) for i in range(clients)]
    for thread in threads:
        thread.start()
    while time.monotonic() < start_at:
        time.sleep(0.05)
    rss_start, cpu_start = _replica_rss_mb(), _cpu_seconds_by_role()
    while time.monotonic() < stop_at:
        time.sleep(0.05)
    cpu_end = _cpu_seconds_by_role()
    for thread in threads:
        thread.join()
    rss_end = _replica_rss_mb()
    serve.delete(APP_NAME)
    summary = _summary("service, batched" if batching else "service, unbatched", latencies, seconds, statuses)
    cpu = {role: round((cpu_end[role] - cpu_start[role]) / seconds, 3) for role in cpu_end}
    return summary | _call_stats(calls) | {"replica_rss_mb": [round(rss_start), round(rss_end)],
                                           "cpu_cores_by_role": cpu}


def _call_stats(calls: list[tuple[float, float]]) -> dict[str, float]:
    """Mean images per pipeline call, and images per second *inside* the calls (per replica).

    Each request reports its call, so a call of n images is seen n times: weight by 1/n to count calls.
    Throughput = replicas x call rate x busy share, so this separates slower calls from gaps between
    them and from small batches."""
    if not calls:
        return {}
    images = np.asarray([c[0] for c in calls])
    seconds = np.asarray([c[1] for c in calls])
    weights = 1.0 / images
    return {"call_images": float(np.sum(images * weights) / np.sum(weights)),
            "call_images_per_s": float(np.sum(images * weights) / np.sum(seconds * weights))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="base model folder with value_encoder/ (default: the shipped toy model)")
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps per image")
    parser.add_argument("--replicas", type=int, default=2, help="generator replicas = direct worker processes")
    parser.add_argument("--clients", type=int, default=32, help="concurrent HTTP clients")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds of service load before measuring (direct workers start after a warm-up call)")
    parser.add_argument("--seconds", type=float, default=40.0, help="measured seconds per mode")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    results = [run_direct(args.model, args.steps, args.replicas, 1, args.seconds),
               run_direct(args.model, args.steps, args.replicas, 8, args.seconds)]
    print("direct:", json.dumps(results), flush=True)
    from livo.serve.ray_env import apply_serve_environment

    apply_serve_environment()  # the Ray settings `livo serve` starts with
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
    print("| mode | requests | requests/s | p50 (s) | p95 (s) | vs direct (same batching) | images per call "
          "| images/s inside calls | HTTP statuses | replica RSS MB (start → end) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for result in results:
        batched = "x8" in result["mode"] or result["mode"].endswith(", batched")
        ratio = result["requests_per_s"] / baseline[batched] if baseline[batched] else float("nan")
        result["ratio_vs_direct"] = ratio
        print(f"| {result['mode']} | {result['requests']} | {result['requests_per_s']:.2f} | {result['p50_s']:.2f} | "
              f"{result['p95_s']:.2f} | {ratio:.3f} | {result.get('call_images', float('nan')):.2f} | "
              f"{result.get('call_images_per_s', float('nan')):.2f} | {result['statuses'] or '—'} | "
              f"{' → '.join(map(str, result.get('replica_rss_mb', []))) or '—'} |")
    print("\nCPU cores used during each service window (of os.cpu_count() = %d):" % os.cpu_count())
    for result in results:
        if "cpu_cores_by_role" in result:
            used = result["cpu_cores_by_role"]
            print(f"- {result['mode']}: " + ", ".join(f"{role} {cores:.2f}" for role, cores in used.items())
                  + f", idle {max(0.0, os.cpu_count() - sum(used.values())):.2f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"args": vars(args), "results": results}, handle, indent=2)


if __name__ == "__main__":
    main()
