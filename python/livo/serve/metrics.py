"""Prometheus metrics of the ingress (``GET /metrics``), in a registry of their own so that two apps in
one process never collide. Ray Serve's built-in ``ray_serve_*`` metrics (replica queue lengths,
per-deployment latency) are exported by Ray's metrics agent alongside."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class ServiceMetrics:
    """Request counts by endpoint and status, latency, images by applied value, selection stages,
    overload rejections, requests in flight and the sizes of the generator's batches."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("livo_serve_requests", "HTTP requests answered", ["endpoint", "status"],
                                registry=self.registry)
        self.latency = Histogram("livo_serve_request_seconds", "Time to answer a request", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.images = Counter("livo_serve_images", "Images generated, by the value applied (none: base model)",
                              ["value"], registry=self.registry)
        self.selections = Counter("livo_serve_selections", "Value decisions, by deciding stage", ["stage"],
                                  registry=self.registry)
        self.rejected = Counter("livo_serve_rejected", "Requests refused before reaching a model replica",
                                ["reason"], registry=self.registry)
        self.in_flight = Gauge("livo_serve_in_flight", "Generation requests being served", registry=self.registry)
        self.batch_images = Histogram("livo_serve_batch_images", "Images per pipeline call of the batch a request ran in",
                                      buckets=(1, 2, 4, 8, 16, 32, 64), registry=self.registry)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
