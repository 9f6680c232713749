"""Generation on Ray: a pool of actors, each holding one :class:`PairGenerator`, fed batches by the
driver; results are judged on the actor and written by the driver in batch order.

Why driver-fed actors and not Ray Data's ``map_batches(compute=ActorPoolStrategy)``: the driver must
write shards and the drop ledger as results arrive (that is what makes a killed job resumable), and
it needs to know which batch failed to re-run exactly that one. With actors it feeds itself both are
direct; measured on 2 cores Ray Data took 1.14-1.15x the actor pool's wall time for the same records
(it adds a streaming executor in the driver and a conversion to blocks), see docs/benchmarks.md.

Order: results are written in batch order, whichever actor finishes first, so two builds of the
same plan write the same rows in the same order (unless a batch fails and is re-run after its round,
or a time checkpoint cuts the shards at another row).

Failures: actors are created with ``max_restarts`` and ``max_task_retries``, so Ray restarts a
dead actor and re-runs its in-flight batch; a batch that still fails (restarts used up, an error
in the batch) is resubmitted by the driver up to ``batch_retries`` times before the build stops.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from livo.dataset.generate import BatchResult, PairGenerator, WorkerSpec
from livo.errors import USER_ERRORS, LivoError


class GenerationFailed(LivoError):
    """A batch failed more often than ``batch_retries`` allows."""


class _PairActor:
    """The Ray actor: one pipeline per actor process, loaded once."""

    def __init__(self, spec: WorkerSpec) -> None:
        import ray

        if spec.device is None and ray.get_gpu_ids():
            from dataclasses import replace

            spec = replace(spec, device="cuda")
        self.generator = PairGenerator(spec)

    def generate(self, batch: int, records: list[dict[str, Any]]) -> BatchResult:
        return self.generator.generate(records, batch)

    def ready(self) -> int:
        """The actor's process id, once its pipeline is loaded (a restarted actor has another)."""
        return os.getpid()

    def node(self) -> str:
        """The address of the node the actor runs on (a restarted actor may be on another)."""
        import ray

        return str(ray.util.get_node_ip_address())


@dataclass
class GenerationStats:
    batches: int = 0
    records: int = 0
    kept: int = 0
    images: int = 0
    retried_batches: int = 0
    failures: list[str] = field(default_factory=list)
    drops: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    actor_seconds: float = 0.0


class Progress:
    """A tqdm bar with rate and ETA on a terminal; elsewhere (Ray job logs) a line every
    ``interval`` seconds with the same numbers."""

    def __init__(self, total: int, enabled: bool = True, interval: float = 30.0) -> None:
        self.total, self.done, self.kept = total, 0, 0
        self.enabled = enabled
        self.interval = interval
        self.started = self.last_line = time.monotonic()
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="pair", desc="build", dynamic_ncols=True, smoothing=0.1)

    def update(self, records: int, kept: int) -> None:
        self.done += records
        self.kept += kept
        if self.bar is not None:
            self.bar.update(records)
            self.bar.set_postfix(kept=self.kept, dropped=self.done - self.kept, refresh=False)
        elif self.enabled and (time.monotonic() - self.last_line >= self.interval or self.done >= self.total):
            self.last_line = time.monotonic()
            print(self.line(), file=sys.stderr, flush=True)

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        eta_text = f"{int(eta // 60)}m{int(eta % 60):02d}s" if eta != float("inf") else "?"
        share = 100.0 * self.done / self.total if self.total else 100.0
        return (
            f"build: {self.done}/{self.total} pairs ({share:.0f}%), kept {self.kept}, "
            f"{rate:.2f} pairs/s, ETA {eta_text}"
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def batches_of(records: Sequence[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [list(records[i : i + size]) for i in range(0, len(records), size)]


def start_actors(
    spec: WorkerSpec, count: int, cpus: float, gpus: float, max_restarts: int, max_task_retries: int
) -> list[Any]:
    """``count`` actors, each with its pipeline loaded (waits until all are ready)."""
    import ray

    # SPREAD places the actors across a cluster's nodes rather than packing the first one, so a
    # lost node costs a share of the actors, not all of them.
    actor_class = ray.remote(_PairActor).options(
        num_cpus=cpus,
        num_gpus=gpus,
        max_restarts=max_restarts,
        max_task_retries=max_task_retries,
        scheduling_strategy="SPREAD",
    )
    actors = [actor_class.remote(spec) for _ in range(count)]
    try:
        ray.get([a.ready.remote() for a in actors])
    except ray.exceptions.RayActorError as error:
        # An actor whose pipeline did not load for a user's mistake (a model folder's weights that
        # cannot be read, say) ends the build with that one line, not Ray's traceback around it.
        cause = next((arg.cause for arg in error.args if isinstance(arg, ray.exceptions.RayTaskError)), None)
        if isinstance(cause, USER_ERRORS):
            raise cause from None
        raise
    return actors


def actor_nodes(actors: list[Any]) -> list[str]:
    """Each actor's node address, in order ("?" for an actor that cannot answer now)."""
    import ray

    nodes = []
    for actor in actors:
        try:
            nodes.append(ray.get(actor.node.remote(), timeout=30))
        except (ray.exceptions.RayError, TimeoutError):
            nodes.append("?")
    return nodes


def run_actor_pool(
    actors: list[Any],
    batches: list[list[dict[str, Any]]],
    consume: Callable[[BatchResult], None],
    *,
    batch_retries: int = 2,
    on_result: Callable[[BatchResult, list[Any]], None] | None = None,
    lookahead: int | None = None,
) -> GenerationStats:
    """Runs every batch on the pool and calls ``consume`` with the results **in batch order**, so
    the dataset's rows (and what a trainer reads from them) do not depend on which actor finished
    first. An idle actor takes the next batch as long as it is at most ``lookahead`` batches
    (default: 4 per actor) ahead of the oldest one not yet consumed; results that arrive early wait
    in memory until then. ``on_result`` sees each result as it arrives.

    A batch whose task fails is resubmitted, up to ``batch_retries`` times, in a later round: the
    results of its round are consumed in order without it, and it comes after them."""
    stats = GenerationStats()
    started = time.perf_counter()
    attempts = Counter[int]()
    window = lookahead if lookahead is not None else 4 * len(actors)
    pending = list(range(len(batches)))
    while pending:
        failed = _run_round(actors, batches, pending, window, attempts, stats, consume, on_result)
        pending = sorted(failed)
        exhausted = [i for i in pending if attempts[i] > batch_retries]
        if exhausted:
            raise GenerationFailed(
                f"generation: batch(es) {exhausted[:5]} failed {batch_retries + 1} times; "
                f"last errors: {stats.failures[-3:]}"
            )
        stats.retried_batches += len(pending)
    stats.seconds = time.perf_counter() - started
    return stats


def _run_round(
    actors: list[Any],
    batches: list[list[dict[str, Any]]],
    order: list[int],
    window: int,
    attempts: Counter[int],
    stats: GenerationStats,
    consume: Callable[[BatchResult], None],
    on_result: Callable[[BatchResult, list[Any]], None] | None,
) -> set[int]:
    """One pass over ``order``; returns the batches that failed."""
    import ray

    idle = list(actors)
    running: dict[Any, tuple[int, Any]] = {}  # result ref -> (position in order, actor)
    arrived: dict[int, BatchResult | None] = {}  # position -> result (None: the batch failed)
    failed: set[int] = set()
    submitted = head = 0  # next position to submit; next position to consume
    while head < len(order):
        while idle and submitted < len(order) and submitted < head + max(window, 1):
            actor = idle.pop(0)
            index = order[submitted]
            attempts[index] += 1
            running[actor.generate.remote(index, batches[index])] = (submitted, actor)
            submitted += 1
        done, _ = ray.wait(list(running), num_returns=1)
        position, actor = running.pop(done[0])
        idle.append(actor)
        try:
            result: BatchResult = ray.get(done[0])
        except ray.exceptions.RayError as error:
            stats.failures.append(f"{type(error).__name__}: {str(error).splitlines()[0][:200]}")
            failed.add(order[position])
            arrived[position] = None
        else:
            arrived[position] = result
            if on_result is not None:
                on_result(result, actors)
        while head in arrived:
            ready = arrived.pop(head)
            head += 1
            if ready is None:
                continue
            stats.batches += 1
            stats.records += len(batches[ready.batch])
            stats.kept += len(ready.kept)
            stats.images += ready.images
            stats.actor_seconds += ready.seconds
            stats.drops.update(reason for _, _, reason in ready.dropped)
            consume(ready)
    return failed


def iterate_plain(spec: WorkerSpec, batches: list[list[dict[str, Any]]]) -> Iterator[BatchResult]:
    """The same work without Ray, in this process (the benchmark's baseline)."""
    generator = PairGenerator(spec)
    for index, batch in enumerate(batches):
        yield generator.generate(batch, index)
