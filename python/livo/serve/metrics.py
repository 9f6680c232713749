"""Prometheus metrics of the service (``GET /metrics``), in a registry of their own so that two apps in
one process never collide, and shared between the replicas that answer HTTP (:class:`SharedMetrics`).
Ray Serve's built-in ``ray_serve_*`` metrics (replica queue lengths, per-deployment latency) are
exported by Ray's metrics agent alongside."""

from __future__ import annotations

import asyncio
import logging
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

logger = logging.getLogger("livo.serve")

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class ServiceMetrics:
    """Request counts by endpoint and status, latency, images by applied value, selection stages,
    overload rejections, requests in flight and the sizes of the generator's batches."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "livo_serve_requests", "HTTP requests answered", ["endpoint", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "livo_serve_request_seconds",
            "Time to answer a request",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.images = Counter(
            "livo_serve_images",
            "Images generated, by the value applied (none: base model)",
            ["value"],
            registry=self.registry,
        )
        self.selections = Counter(
            "livo_serve_selections", "Value decisions, by deciding stage", ["stage"], registry=self.registry
        )
        self.rejected = Counter(
            "livo_serve_rejected",
            "Requests refused before reaching a model replica",
            ["reason"],
            registry=self.registry,
        )
        self.in_flight = Gauge("livo_serve_in_flight", "Generation requests being served", registry=self.registry)
        self.batch_images = Histogram(
            "livo_serve_batch_images",
            "Images per pipeline call of the batch a request ran in",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Families:
    """A collector that returns already-built metric families (the merged snapshots)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def merge_snapshots(snapshots: dict[str, bytes]) -> bytes:
    """One exposition from each replica's own (``{replica id: exposition}``): every sample gets a
    ``replica`` label, so each replica's counters stay separate series that only ever grow, and
    ``sum without (replica) (...)`` in a query gives the whole service."""
    families: dict[str, Metric] = {}
    for replica, text in sorted(snapshots.items()):
        for family in text_string_to_metric_families(text.decode("utf-8")):
            merged = families.setdefault(family.name, Metric(family.name, family.documentation, family.type))
            merged.samples.extend(
                Sample(s.name, {"replica": replica, **s.labels}, s.value, s.timestamp, s.exemplar)
                for s in family.samples
            )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(list(families.values())))
    return generate_latest(registry)


class SharedMetrics:
    """``/metrics`` for a deployment whose replicas each answer HTTP: every replica publishes its
    exposition to Ray's cluster key-value store once a ``period_s``, and a scrape (whichever replica
    takes it) answers all replicas' expositions merged (:func:`merge_snapshots`). Without this a
    scrape would see one replica's counts, and which one would change from scrape to scrape.

    The store is Ray's internal key-value store in the GCS (``ray.experimental.internal_kv``, which
    Ray's own libraries use): it needs no extra process, works across nodes, and costs one small write
    per replica a second. A snapshot not refreshed for ``stale_s`` (a replica that stopped) is left
    out, then deleted. Outside a Serve replica (no replica context) it is this process's metrics alone."""

    NAMESPACE = "livo_serve_metrics"

    def __init__(self, metrics: ServiceMetrics, period_s: float = 1.0, stale_s: float = 10.0) -> None:
        self.metrics = metrics
        self.period_s = period_s
        self.stale_s = stale_s
        self.replica, self.prefix = _replica_identity()
        self._publisher: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Starts publishing (idempotent; needs the replica's running event loop)."""
        if self.replica is not None and (self._publisher is None or self._publisher.done()):
            self._publisher = asyncio.get_running_loop().create_task(self._publish_forever())

    async def _publish_forever(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self._publish)
            except Exception:  # noqa: BLE001 - a missed snapshot only makes a scrape a second older
                logger.warning("could not publish this replica's metrics", exc_info=True)
            await asyncio.sleep(self.period_s)

    def _publish(self) -> None:
        from ray.experimental.internal_kv import _internal_kv_put

        stamped = f"{time.time():.3f}\n".encode() + self.metrics.exposition()
        _internal_kv_put(f"{self.prefix}{self.replica}", stamped, overwrite=True, namespace=self.NAMESPACE)

    def _collect(self) -> dict[str, bytes]:
        from ray.experimental.internal_kv import _internal_kv_del, _internal_kv_get, _internal_kv_list

        snapshots = {}
        for key in _internal_kv_list(self.prefix, namespace=self.NAMESPACE):
            stamped = _internal_kv_get(key, namespace=self.NAMESPACE)
            if stamped is None:
                continue
            stamp, _, text = stamped.partition(b"\n")
            if time.time() - float(stamp) > self.stale_s:
                _internal_kv_del(key, namespace=self.NAMESPACE)
                continue
            snapshots[key.decode()[len(self.prefix) :]] = text
        return snapshots

    async def exposition(self) -> bytes:
        """All live replicas' metrics; this replica's as of now, the others' as of their last publish."""
        if self.replica is None:
            return self.metrics.exposition()
        try:
            snapshots = await asyncio.to_thread(self._collect)
        except Exception:  # noqa: BLE001 - the store unreachable: answer what this replica knows
            logger.warning("could not read the other replicas' metrics", exc_info=True)
            snapshots = {}
        snapshots[self.replica] = self.metrics.exposition()
        return merge_snapshots(snapshots)


def _replica_identity() -> tuple[str | None, str]:
    """This Serve replica's id and the key prefix shared by its deployment's replicas."""
    from ray import serve
    from ray.serve.exceptions import RayServeException

    try:
        context = serve.get_replica_context()
    except RayServeException:  # not inside a Serve replica
        return None, ""
    return context.replica_tag, f"{context.app_name}/{context.deployment}/"
