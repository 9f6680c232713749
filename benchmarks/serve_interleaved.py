"""Service vs direct ``LiVOPipeline`` throughput at saturation, in short alternating phases, so that
this machine's speed drift (up to 60% between phases minutes apart) cancels out of the ratio.

``serve_load.py`` runs direct and service phases of 30–40 s minutes apart, and its throughput ratio
scatters from 0.55 to 1.02 for one configuration. Here both sides are started once and take turns:
in each phase one side runs alone on all cores while the other is frozen (``SIGSTOP`` on every
process of it: for the service, Ray's raylet, GCS, agents, controller, proxy or HAProxy, and the
replicas; for direct, its worker processes), then they swap (``SIGCONT``). A frozen side takes no
CPU, so each side's phases measure it alone, as if the other were not there, and the service's own
idle cost (Ray, the controller) is charged to its phases. Cycles alternate the order (direct then
service, service then direct), so a drift that is linear within a cycle cancels too.

Phases are kept at 15 s or less, below the timeouts a frozen service could trip against the running
benchmark process (Serve's replica health check 30 s, a request 120 s, Ray's gRPC keepalives); the
GCS's 10 s health check of the raylet counts as failed only after 5 misses in a row. Inside the
frozen side every process stops at once, so none times out against another. In the runs recorded in
docs/benchmarks.md Ray's logs show no failed health check, and every answer was a 200.

Both sides: ``--replicas`` processes of 1 CPU and one torch thread at Ray's worker niceness; direct
passes 8 prompts per call (``direct x8`` in ``serve_load.py``), the service batches up to 8 requests
per call (``--clients`` closed-loop HTTP clients, 1 image per request, value mode ``auto``).
Work in flight when a side is frozen finishes in its next phase, so the totals over all phases are
the measure; the spread over cycles gives the interval.

The ratio is also split into factors: busy cores (each side's share of the machine), the share of
them that went to the model (direct: its worker processes; service: the replicas' ``livo-generate``
threads) and images per model CPU-second. The second is what Ray, Serve and HTTP cost; the third is
how fast the model runs when it does run.

    source scripts/env.sh && OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/serve_interleaved.py [--proxy serve] [--json F]

Runs minutes apart differ by more than one run's interval (the machine, and which processes land
where), so the figure to quote pools several: ``serve_interleaved.py --pool run1.json run2.json ...``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import time
from typing import Any

import numpy as np

from livo.permissions import write_atomic
from serve_load import (
    _cpu_stats,
    _machine_busy_seconds,
    _model_thread_cpu_seconds,
    _processes_cpu_seconds,
    direct_call,
    start_batched_service,
    start_clients,
)

MAX_PHASE_S = 15.0


def _direct_loop(steps: int, images: Any, ready: Any) -> None:
    call = direct_call(None, steps, 8)
    call()  # warm-up
    ready.release()
    while True:
        call()
        with images.get_lock():
            images.value += 8


def _service_processes(exclude: set[int]) -> list[int]:
    """Every process this benchmark started for the service: all descendants of this process (Ray's
    node processes are its children, workers and HAProxy theirs) but the direct side."""
    import psutil

    pids = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.pid in exclude or "multiprocessing" in " ".join(child.cmdline()):
                continue  # the direct workers and multiprocessing's resource tracker
        except psutil.Error:
            continue
        pids.append(child.pid)
    return pids


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--proxy",
        choices=("serve", "haproxy"),
        default="haproxy",
        help="what receives HTTP connections (livo serve --proxy)",
    )
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps per image")
    parser.add_argument("--replicas", type=int, default=2, help="generator replicas = direct worker processes")
    parser.add_argument("--clients", type=int, default=32, help="concurrent HTTP clients")
    parser.add_argument("--cycles", type=int, default=16, help="direct + service phase pairs")
    parser.add_argument("--seconds", type=float, default=MAX_PHASE_S, help=f"seconds per phase (≤ {MAX_PHASE_S:g})")
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds of service load before the first phase")
    parser.add_argument("--json", help="also write the phases here")
    parser.add_argument(
        "--pool",
        nargs="+",
        metavar="JSON",
        help="measure nothing: pool earlier runs' --json files and print their joint summary",
    )
    args = parser.parse_args()
    if args.pool:
        print(json.dumps(pool(args.pool)), flush=True)
        return
    if not 0 < args.seconds <= MAX_PHASE_S:
        parser.error(f"--seconds must be in (0, {MAX_PHASE_S:g}]: a longer freeze can trip Ray's health checks")

    port = start_batched_service(args.proxy, args.replicas)  # sets Ray's environment first, then starts it
    import ray
    from ray import serve

    context = mp.get_context("spawn")
    direct_images, ready = context.Value("l", 0), context.Semaphore(0)
    direct = [
        context.Process(target=_direct_loop, args=(args.steps, direct_images, ready), daemon=True)
        for _ in range(args.replicas)
    ]
    for process in direct:
        process.start()
    for _ in direct:
        ready.acquire()
    direct_pids = {process.pid for process in direct}
    _signal_all(list(direct_pids), signal.SIGSTOP)

    clients, stop, statuses, answered = start_clients(port, args.clients, args.steps)

    def images(side: str) -> int:
        return direct_images.value if side == "direct" else len(answered)

    def model_cpu_seconds(side: str) -> float:  # direct: its worker processes; service: the model threads
        return _processes_cpu_seconds(list(direct_pids)) if side == "direct" else _model_thread_cpu_seconds()

    phases = []
    try:  # from here on, whatever stops the run must unfreeze both sides (a frozen process ignores SIGTERM)
        time.sleep(args.warmup)
        for cycle in range(args.cycles):
            for side in ("direct", "service") if cycle % 2 == 0 else ("service", "direct"):
                service_pids = _service_processes(direct_pids)
                frozen, running = (service_pids, direct_pids) if side == "direct" else (direct_pids, service_pids)
                _signal_all(list(frozen), signal.SIGSTOP)
                _signal_all(list(running), signal.SIGCONT)
                model = model_cpu_seconds(side)
                begin, count, busy = time.monotonic(), images(side), _machine_busy_seconds()
                time.sleep(args.seconds)
                seconds = time.monotonic() - begin
                phase = {
                    "cycle": cycle,
                    "side": side,
                    "seconds": round(seconds, 3),
                    "images": images(side) - count,
                    "busy_cores": round((_machine_busy_seconds() - busy) / seconds, 3),
                    "model_cores": round((model_cpu_seconds(side) - model) / seconds, 3),
                }
                phase["images_per_s"] = round(phase["images"] / seconds, 3)
                phases.append(phase)
                print(json.dumps(phase), flush=True)
    finally:
        stop.set()
        _signal_all(_service_processes(direct_pids), signal.SIGCONT)
        for process in direct:
            process.kill()  # SIGKILL: it also ends a frozen process
    for client in clients:  # each finishes the request it has in flight
        client.join()
    serve.shutdown()
    ray.shutdown()
    _report(args, phases, statuses)


def _cpu_seconds(phases: list[dict[str, Any]], side: str, key: str) -> float:
    """CPU-seconds of ``key`` (``busy_cores`` or ``model_cores``) over ``side``'s phases."""
    return sum(p[key] * p["seconds"] for p in phases if p["side"] == side)


def _summary(phases: list[dict[str, Any]], cycles: int) -> dict[str, Any]:
    """Throughput ratio over ``phases`` (cycles numbered 0 … ``cycles`` - 1), its 95% interval, and the
    factors it splits into."""

    def rate(side: str, cycle: int) -> float:
        chosen = [p for p in phases if p["side"] == side and p["cycle"] == cycle]
        return sum(p["images"] for p in chosen) / sum(p["seconds"] for p in chosen)

    sides = ("direct", "service")
    images = {side: sum(p["images"] for p in phases if p["side"] == side) for side in sides}
    seconds = {side: sum(p["seconds"] for p in phases if p["side"] == side) for side in sides}
    busy = {side: _cpu_seconds(phases, side, "busy_cores") for side in sides}
    stats = {side: _cpu_stats(images[side], _cpu_seconds(phases, side, "model_cores"), busy[side]) for side in sides}
    per_second = {side: images[side] / seconds[side] for side in sides}
    per_cycle = np.asarray(
        [rate("service", c) / rate("direct", c) if rate("direct", c) else np.nan for c in range(cycles)]
    )
    # Cycles next to each other share work carried over a freeze, so pairs of cycles are the units of the
    # interval: Student's t over their ratios (8 pairs in a run: t = 2.36, not the normal 1.96).
    from scipy import stats as scipy_stats

    pairs = per_cycle[: len(per_cycle) // 2 * 2].reshape(-1, 2).mean(axis=1)
    t_quantile = float(scipy_stats.t.ppf(0.975, len(pairs) - 1)) if len(pairs) > 1 else None
    half_width = (
        round(t_quantile * float(pairs.std(ddof=1)) / np.sqrt(len(pairs)), 3) if t_quantile is not None else None
    )
    return {
        "direct_images_per_s": round(per_second["direct"], 3),
        "service_images_per_s": round(per_second["service"], 3),
        "images": images,
        "ratio": round(per_second["service"] / per_second["direct"], 3),
        "ratio_95_interval": half_width,
        "median_cycle_ratio": round(float(np.median(per_cycle)), 3),
        "busy_cores": {side: round(busy[side] / seconds[side], 3) for side in sides},
        # ratio = busy-cores ratio × model-share ratio × images-per-model-CPU-second ratio
        **{
            key: {side: round(stats[side][key], 3) for side in sides}
            for key in ("model_cpu_share", "images_per_model_cpu_s")
        },
    }


def _report(args: argparse.Namespace, phases: list[dict[str, Any]], statuses: dict[int, int]) -> None:
    summary = {
        "proxy": args.proxy,
        "steps": args.steps,
        "replicas": args.replicas,
        "clients": args.clients,
        "cycles": args.cycles,
        "seconds_per_phase": args.seconds,
        **_summary(phases, args.cycles),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }
    print(json.dumps(summary), flush=True)
    if args.json:
        write_atomic(args.json, json.dumps({"summary": summary, "phases": phases}, indent=2).encode())


def pool(paths: list[str]) -> dict[str, Any]:
    """Several runs' ``--json`` files as one: all phases together (cycles renumbered run after run), and
    the spread between the runs' own ratios. Runs started minutes apart see a different machine, so the
    run-level interval (Student's t over the runs) is the cautious one; the pooled pairs' interval
    assumes the runs are alike."""
    from scipy import stats as scipy_stats

    phases: list[dict[str, Any]] = []
    runs, settings = [], set()
    for path in paths:
        with open(path) as handle:
            run = json.load(handle)
        summary = run["summary"]
        settings.add(tuple(summary[key] for key in ("proxy", "steps", "replicas", "clients", "seconds_per_phase")))
        offset = len(phases) and max(p["cycle"] for p in phases) + 1
        phases += [p | {"cycle": p["cycle"] + offset} for p in run["phases"]]
        runs.append(_summary(run["phases"], summary["cycles"])["ratio"])
    if len(settings) != 1:
        raise SystemExit(
            f"--pool: the runs differ in proxy, steps, replicas, clients or phase length: {sorted(settings)}"
        )
    cycles = max(p["cycle"] for p in phases) + 1
    half_width = None  # one run: no spread between runs to measure
    if len(runs) > 1:
        t_quantile = float(scipy_stats.t.ppf(0.975, len(runs) - 1))
        half_width = round(t_quantile * float(np.std(runs, ddof=1)) / np.sqrt(len(runs)), 3)
    return {
        "runs": len(runs),
        "run_ratios": runs,
        **_summary(phases, cycles),
        "run_mean_ratio": round(float(np.mean(runs)), 3),
        "run_mean_95_interval": half_width,
    }


if __name__ == "__main__":
    main()
