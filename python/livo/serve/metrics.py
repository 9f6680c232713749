"""Prometheus metrics of the service (``GET /metrics``), in a registry of their own so that two apps in
one process never collide, and shared between the replicas that answer HTTP (:class:`SharedMetrics`).
Ray Serve's built-in ``ray_serve_*`` metrics (replica queue lengths, per-deployment latency) are
exported by Ray's metrics agent alongside."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter as Tally
from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

logger = logging.getLogger("livo.serve")

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class ServiceMetrics:
    """Request counts by endpoint and status, latency, images by applied value, selection stages,
    overload rejections, requests lost with their model replica, requests in flight and the sizes of
    the generator's batches."""

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
            "Images generated, by the values applied (joined with +; none: base model)",
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
        self.lost = Counter(
            "livo_serve_replica_lost_requests",
            "Requests that failed because the model replica serving them was lost (its process or node ended)",
            ["endpoint"],
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


def image_value_label(value_ids: Sequence[str]) -> str:
    """The ``value`` label of an image: its applied values in order, joined with ``+``
    (``no_blood+colour_equality``, the evaluation's name for such a pair), or ``none``."""
    return "+".join(value_ids) or "none"


class _Families:
    """A collector that returns already-built metric families (the merged snapshots)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def merge_snapshots(snapshots: dict[str, bytes], extra: Iterable[Metric] = ()) -> bytes:
    """One exposition from each replica's own (``{replica id: exposition}``) and the ``extra``
    families: every sample gets a ``replica`` label, so each replica's counters stay separate series
    that only ever grow, and ``sum without (replica) (...)`` in a query gives the whole service."""
    families: dict[str, Metric] = {family.name: family for family in extra}
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


def replica_families(
    live: Iterable[tuple[str, str]], lost: Iterable[tuple[str, str]]
) -> list[GaugeMetricFamily | CounterMetricFamily]:
    """``livo_serve_replicas`` (alive now) and ``livo_serve_replicas_lost_total`` (gone without a clean
    stop), each by deployment and node, from ``(deployment, node)`` pairs: where a lost node shows."""
    families: list[GaugeMetricFamily | CounterMetricFamily] = [
        GaugeMetricFamily(
            "livo_serve_replicas",
            "Replicas of the service alive now, by deployment and node",
            labels=["deployment", "node"],
        ),
        CounterMetricFamily(
            "livo_serve_replicas_lost",
            "Replicas that stopped reporting without a clean stop (process or node lost), by deployment and node",
            labels=["deployment", "node"],
        ),
    ]
    for family, pairs in zip(families, (live, lost), strict=True):
        for (deployment, node), count in sorted(Tally(pairs).items()):
            family.add_metric([deployment, node], count)
    return families


class SharedMetrics:
    """``/metrics`` for a deployment whose replicas each answer HTTP: every replica publishes its
    exposition to Ray's cluster key-value store once a ``period_s``, and a scrape (whichever replica
    takes it) answers all replicas' expositions merged (:func:`merge_snapshots`). Without this a
    scrape would see one replica's counts, and which one would change from scrape to scrape.

    The store is Ray's internal key-value store in the GCS (``ray.experimental.internal_kv``, which
    Ray's own libraries use): it needs no extra process, works across nodes, and costs one small write
    per replica a second. A snapshot not refreshed for ``stale_s`` (a replica that stopped) is left
    out, then deleted. Outside a Serve replica (no replica context) it is this process's metrics alone.

    Each snapshot names the replica's node, and replicas without HTTP metrics (the split layout's
    generators: ``metrics`` None) publish an empty one, so a scrape also counts every deployment's
    live replicas per node. A replica that stops cleanly withdraws its snapshot (:meth:`withdraw`);
    one whose snapshot went stale instead was lost with its process or node, and is counted in
    ``livo_serve_replicas_lost_total`` for as long as the cluster runs."""

    NAMESPACE = "livo_serve_metrics"
    LOST_NAMESPACE = "livo_serve_lost_replicas"

    def __init__(self, metrics: ServiceMetrics | None, period_s: float = 1.0, stale_s: float = 10.0) -> None:
        self.metrics = metrics
        self.period_s = period_s
        self.stale_s = stale_s
        self.replica, self.prefix = _replica_identity()
        # ``prefix`` is "<app>/<deployment>/": the app's prefix covers every deployment's replicas.
        self.app_prefix = self.prefix.split("/", 1)[0] + "/" if self.replica is not None else ""
        self.deployment = self.prefix[len(self.app_prefix) :].rstrip("/")
        self.node = _node_address() if self.replica is not None else "local"
        self._publisher: asyncio.Task[None] | None = None
        self._withdrawn = False

    def start(self) -> None:
        """Starts publishing (idempotent; needs the replica's running event loop)."""
        if self.replica is not None and (self._publisher is None or self._publisher.done()):
            self._publisher = asyncio.get_running_loop().create_task(self._publish_forever())

    async def _publish_forever(self) -> None:
        while not self._withdrawn:
            try:
                await asyncio.to_thread(self._publish)
            except Exception:  # noqa: BLE001 - a missed snapshot only makes a scrape a second older
                logger.warning("could not publish this replica's metrics", exc_info=True)
            await asyncio.sleep(self.period_s)

    def _exposition(self) -> bytes:
        return self.metrics.exposition() if self.metrics is not None else b""

    def _publish(self) -> None:
        from ray.experimental.internal_kv import _internal_kv_put

        if self._withdrawn:
            return
        stamped = f"{time.time():.3f} {self.node}\n".encode() + self._exposition()
        _internal_kv_put(f"{self.prefix}{self.replica}", stamped, overwrite=True, namespace=self.NAMESPACE)

    def withdraw(self) -> None:
        """A clean stop: the snapshot goes now, so this replica is not counted as lost. (Serve may call
        this from another thread than the replica's event loop: the publisher sees the flag and stops,
        rather than being cancelled across threads.)"""
        self._withdrawn = True
        if self.replica is None:
            return
        from ray.experimental.internal_kv import _internal_kv_del

        try:
            _internal_kv_del(f"{self.prefix}{self.replica}", namespace=self.NAMESPACE)
        except Exception:  # noqa: BLE001 - the cluster going down with the replica: nothing to withdraw from
            logger.debug("could not withdraw this replica's metrics", exc_info=True)

    def _collect(self) -> tuple[dict[str, bytes], list[tuple[str, str]], list[tuple[str, str]]]:
        """This deployment's live snapshots, and (deployment, node) of every live and lost replica of
        the app."""
        from ray.experimental.internal_kv import _internal_kv_del, _internal_kv_get, _internal_kv_list, _internal_kv_put

        snapshots, live = {}, [(self.deployment, self.node)]
        for key in _internal_kv_list(self.app_prefix, namespace=self.NAMESPACE):
            name = key.decode()
            deployment, _, replica = name[len(self.app_prefix) :].partition("/")
            if replica == self.replica:
                continue
            stamped = _internal_kv_get(key, namespace=self.NAMESPACE)
            if stamped is None:
                continue
            header, _, text = stamped.partition(b"\n")
            stamp, _, node = header.decode().partition(" ")
            if time.time() - float(stamp) > self.stale_s:
                _internal_kv_put(key, node.encode(), overwrite=True, namespace=self.LOST_NAMESPACE)
                _internal_kv_del(key, namespace=self.NAMESPACE)
                continue
            live.append((deployment, node))
            if name.startswith(self.prefix):
                snapshots[replica] = text
        lost = []
        for key in _internal_kv_list(self.app_prefix, namespace=self.LOST_NAMESPACE):
            node = _internal_kv_get(key, namespace=self.LOST_NAMESPACE)
            deployment = key.decode()[len(self.app_prefix) :].partition("/")[0]
            lost.append((deployment, (node or b"").decode()))
        return snapshots, live, lost

    async def exposition(self) -> bytes:
        """All live replicas' metrics; this replica's as of now, the others' as of their last publish."""
        if self.replica is None:
            return self._exposition()
        try:
            snapshots, live, lost = await asyncio.to_thread(self._collect)
        except Exception:  # noqa: BLE001 - the store unreachable: answer what this replica knows
            logger.warning("could not read the other replicas' metrics", exc_info=True)
            snapshots, live, lost = {}, [(self.deployment, self.node)], []
        snapshots[self.replica] = self._exposition()
        return merge_snapshots(snapshots, replica_families(live, lost))


def _replica_identity() -> tuple[str | None, str]:
    """This Serve replica's id and the key prefix shared by its deployment's replicas."""
    from ray import serve
    from ray.serve.exceptions import RayServeException

    try:
        context = serve.get_replica_context()
    except RayServeException:  # not inside a Serve replica
        return None, ""
    return context.replica_tag, f"{context.app_name}/{context.deployment}/"


def _node_address() -> str:
    import ray

    return str(ray.util.get_node_ip_address())
