"""The Ray Serve application: a FastAPI front over batched model replicas, in one of two layouts.

``combined`` (the default): each ``Service`` replica (class :class:`Ingress` with the model inside)
authenticates, validates, serves the page and metrics, and runs its own :class:`ModelReplica`; one
process per replica and no hop between deployments. ``split``: light ``Ingress`` replicas forward to
``Generator`` replicas (each a :class:`ModelReplica`) through a deployment handle, so HTTP and models
scale apart. Either way concurrent generation requests are grouped by
:class:`~livo.serve.batching.JobBatcher` into pipeline calls of up to ``max_batch_images`` images,
each formed when the pipeline is free.

Overload is answered, never queued without bound: past a model replica's ``max_ongoing_requests +
max_queued_requests`` generation requests the service answers 429 with ``Retry-After``; past the HTTP
replicas' own limits Ray Serve answers 503 (its proxy, or with ``livo serve --proxy haproxy`` the
replica's own HTTP server). A request that takes longer than
``limits.request_timeout_s`` is cancelled and answered 504.

Endpoints: ``POST /v1/generate``, ``POST /v1/select``, ``GET /v1/values``, ``GET /healthz``,
``GET /metrics``, and the page at ``/`` (``/static/*``). ``app_builder`` is the entry point of a Ray
Serve config file (``import_path: livo.serve.app:app_builder``).
"""

import asyncio
import base64
import logging
import secrets
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle

from livo.serve.auth import BearerAuth
from livo.serve.batching import JobBatcher, QueueFull
from livo.serve.body_limit import BodyLimit
from livo.serve.config import ServiceConfig, parse_config
from livo.serve.engine import (
    AUTO,
    MODEL_THREAD_NAME,
    NONE,
    GenerationEngine,
    GenerationJob,
    GenerationResult,
    name_os_thread,
)
from livo.serve.grpc_binding import bind_replica_grpc_to_node
from livo.serve.metrics import ServiceMetrics, SharedMetrics, image_value_label
from livo.serve.schemas import (
    GeneratedImage,
    GenerateRequest,
    GenerateResponse,
    Selection,
    SelectRequest,
    SelectResponse,
    limit_problems,
    select_problems,
)

STATIC_DIR = Path(__file__).resolve().parent / "static"
APP_NAME = "livo"
HEALTH_PROBE_S = 2.0
logger = logging.getLogger("livo.serve")

web = FastAPI(title="LiVO aligned generation", docs_url=None, redoc_url=None)  # no CDN-hosted docs pages
web.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

CONTENT_SECURITY_POLICY = "default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'"


# Added before _guard, so it runs inside it: its 413 answers get _guard's headers too.
web.add_middleware(BodyLimit)


# The ``endpoint`` label of the request metrics: a fixed set, whatever paths clients send.
ENDPOINTS = {
    "/v1/generate": "generate",
    "/v1/select": "select",
    "/v1/values": "values",
    "/metrics": "metrics",
    "/healthz": "healthz",
    "/": "page",
}


def endpoint_label(path: str) -> str:
    return ENDPOINTS.get(path) or ("static" if path.startswith("/static/") else "other")


@web.middleware("http")
async def _guard(request: Request, call_next: Any) -> Response:
    """Count every answer by endpoint and status (401s, FastAPI's own 422s and 413s included) and set
    headers that keep the page self-contained (body sizes: :class:`BodyLimit`)."""
    started = time.perf_counter()
    observe = getattr(request.app.state, "observe", None)
    try:
        response: Response = await _authorised(request) or await call_next(request)
    except Exception:
        if observe is not None:
            observe(endpoint_label(request.url.path), 500, started)
        raise
    if observe is not None:
        observe(endpoint_label(request.url.path), response.status_code, started)
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


async def require_token(request: Request) -> None:
    """Dependency of every API route (and what the OpenAPI schema shows); :func:`_authorised` has
    already checked the token in the middleware."""
    request.app.state.auth.check(request.headers, request.client.host if request.client else None)


def _protected(path: str) -> bool:
    return path.startswith("/v1/") or path == "/metrics"


async def _authorised(request: Request) -> Response | None:
    """The 401/403 answer to a request for the API without a valid token, or None. Checked here,
    before the route runs: FastAPI reads and parses a route's JSON body before its dependencies, so
    malformed JSON from anyone was answered 422 after reading up to the body limit."""
    auth = getattr(request.app.state, "auth", None)
    if auth is None or not _protected(request.url.path):
        return None
    try:
        auth.check(request.headers, request.client.host if request.client else None)
    except HTTPException as refused:
        return JSONResponse({"detail": refused.detail}, refused.status_code, headers=refused.headers)
    return None


async def bounded_call(call: Any, endpoint: str, timeout_s: float, retry_after_s: int, metrics: ServiceMetrics) -> Any:
    """Await a model call (a ``DeploymentResponse`` in the split layout, a coroutine of the local
    :class:`ModelReplica` in the combined one): a full queue → 429 with ``Retry-After``, no answer
    within ``timeout_s`` → the call is cancelled and 504, a replica lost while it held the call (its
    process or node ended: Ray's actor errors) → 503 with ``Retry-After``, for a retry goes to a live
    replica, a failed replica → 500 (logged here, nothing internal told to the client)."""
    try:
        return await asyncio.wait_for(call, timeout_s)
    except (BackPressureError, QueueFull) as error:
        metrics.rejected.labels("queue_full").inc()
        raise HTTPException(
            429,
            f"overloaded, retry later ({getattr(error, 'message', error)})",
            headers={"Retry-After": str(retry_after_s)},
        ) from None
    except TimeoutError:
        if hasattr(call, "cancel"):  # a replica's request runs on unless told; a coroutine is cancelled already
            call.cancel()
        metrics.rejected.labels("timeout").inc()
        raise HTTPException(504, f"{endpoint}: no answer within {timeout_s:g} s") from None
    except RayActorError as error:
        logger.warning("generator call %s lost its replica: %s", endpoint, str(error).splitlines()[0])
        metrics.lost.labels(endpoint).inc()
        raise HTTPException(
            503,
            f"{endpoint}: the model replica serving this request was lost (its process or node ended); retry",
            headers={"Retry-After": str(retry_after_s)},
        ) from None
    except Exception:
        logger.exception("generator call %s failed", endpoint)
        raise HTTPException(500, f"{endpoint}: the model replica failed; see the service log") from None


class ModelReplica:
    """What one model replica holds: the loaded engine and the batcher that feeds it. A ``Generator``
    deployment replica in the split layout; inside each ``Service`` replica in the combined layout."""

    def __init__(self, config: ServiceConfig, max_jobs: int | None = None) -> None:
        import torch

        settings = config.generator
        torch.set_num_threads(settings.torch_threads or max(1, int(settings.num_cpus)))
        self.engine = GenerationEngine.from_config(config)
        # Without batching, jobs still go through one queue (one job per call): a thread per waiting
        # request would only contend for the pipeline lock.
        max_images, wait_s = (
            (settings.max_batch_images, settings.batch_wait_timeout_s) if settings.batching else (1, 0.0)
        )
        self.batcher: JobBatcher[GenerationJob, GenerationResult] = JobBatcher(
            self._run_jobs, lambda job: job.num_images, max_images, wait_s, max_jobs=max_jobs
        )
        # One named thread runs every pipeline call (the batcher runs one at a time): `top -H` and
        # /proc show the model's CPU apart from the HTTP and Ray threads (benchmarks/serve_load.py).
        self._model_thread = ThreadPoolExecutor(
            1, thread_name_prefix=MODEL_THREAD_NAME, initializer=name_os_thread, initargs=(MODEL_THREAD_NAME,)
        )
        # Selections run one at a time (the selector is locked) in a thread of their own, held to the
        # batcher's bound: a selection cut off by the request timeout runs on, and without a bound
        # every such request would hold a thread of the event loop's pool.
        self._select_thread = ThreadPoolExecutor(1, thread_name_prefix="livo-select")
        self._selects_held = 0
        self._max_selects = max_jobs

    async def _run_jobs(self, jobs: list[GenerationJob]) -> list[GenerationResult]:
        return await asyncio.get_running_loop().run_in_executor(self._model_thread, self.engine.generate, jobs)

    async def generate(self, job: GenerationJob) -> GenerationResult:
        arrived = time.perf_counter()
        result = await self.batcher.submit(job)
        # Time in this replica (waiting for a batch + generating); the ingress's total minus this is routing.
        return replace(result, timings=result.timings | {"replica_s": time.perf_counter() - arrived})

    async def select(self, prompts: list[str]) -> list[dict[str, Any]]:
        if self._max_selects is not None and self._selects_held >= self._max_selects:
            raise QueueFull(
                f"{self._selects_held} selections already waiting or running here (limit {self._max_selects})"
            )
        self._selects_held += 1
        future = asyncio.get_running_loop().run_in_executor(self._select_thread, self.engine.select, prompts)
        future.add_done_callback(self._select_done)
        return await asyncio.shield(future)

    def _select_done(self, _: Any) -> None:
        self._selects_held -= 1

    async def info(self) -> dict[str, Any]:
        pipeline = self.engine.pipeline
        return {
            "values": self.engine.values(),
            "max_values_per_prompt": self.engine.max_values,
            "bias_probability": float(pipeline.bias_probability),
            "model": type(pipeline.base).__name__,
            "device": str(pipeline.device),
            "image_size": int(pipeline.base.unet.config.sample_size)
            * int(getattr(pipeline.base, "vae_scale_factor", 1)),
        }


@serve.deployment(name="Generator")
class Generator(ModelReplica):
    """A model replica of the split layout, called by the ingress through a deployment handle (Serve
    bounds its queue: ``max_ongoing_requests`` + ``max_queued_requests``)."""

    def __init__(self, config: dict[str, Any]) -> None:
        bind_replica_grpc_to_node()
        parsed = parse_config(config, "Generator config")
        # Serve bounds the calls it routes here, but a selection cut off by the request timeout is no
        # longer counted by Serve while it runs on: the replica's own bound holds it.
        settings = parsed.generator
        super().__init__(parsed, max_jobs=settings.max_ongoing_requests + settings.max_queued_requests)
        self.presence = SharedMetrics(None)  # no HTTP metrics: reports that it is alive, and where

    async def check_health(self) -> None:
        """Serve's periodic probe; it starts the presence reports of a replica that has had no call yet."""
        self.presence.start()

    async def generate(self, job: GenerationJob) -> GenerationResult:
        self.presence.start()
        return await super().generate(job)

    def __del__(self) -> None:
        self.presence.withdraw()


class RemoteModel:
    """The split layout's generator replicas seen from the ingress: the same methods as
    :class:`ModelReplica`, each returning a ``DeploymentResponse``."""

    def __init__(self, handle: DeploymentHandle) -> None:
        self.handle = handle

    def generate(self, job: GenerationJob) -> Any:
        return self.handle.generate.remote(job)

    def select(self, prompts: list[str]) -> Any:
        return self.handle.select.remote(prompts)

    def info(self) -> Any:
        return self.handle.info.remote()


@serve.deployment(name="Ingress")
@serve.ingress(web)
class Ingress:
    """HTTP front: auth, validation, metrics and the web page; generation and selection go to the model
    in this replica (``generator`` None: the combined layout) or through the handle to the generator
    replicas (the split layout)."""

    def __init__(self, generator: DeploymentHandle | None, config: dict[str, Any]) -> None:
        bind_replica_grpc_to_node()
        self.config = parse_config(config, "Ingress config")
        settings = self.config.generator
        # Combined layout (no generator handle): the model lives in this replica, and its batcher holds
        # as many jobs as a split-layout generator replica would accept and queue.
        self.model: ModelReplica | RemoteModel = (
            RemoteModel(generator)
            if generator is not None
            else ModelReplica(self.config, max_jobs=settings.max_ongoing_requests + settings.max_queued_requests)
        )
        self.metrics = ServiceMetrics()
        self.shared_metrics = SharedMetrics(self.metrics)
        self._info: dict[str, Any] | None = None
        web.state.auth = BearerAuth(self.config.auth)
        web.state.max_body_bytes = self.config.limits.max_body_bytes
        web.state.observe = self._observe

    async def _generator_info(self) -> dict[str, Any]:
        if self._info is None:
            self._info = await self._call(self.model.info(), "info")
        return self._info

    async def _call(self, call: Any, endpoint: str) -> Any:
        return await bounded_call(
            call, endpoint, self.config.limits.request_timeout_s, self.config.generator.retry_after_s, self.metrics
        )

    async def check_health(self) -> None:
        """Serve's periodic probe; it starts the metrics publishing of a replica that has had no request."""
        self.shared_metrics.start()

    def __del__(self) -> None:
        self.shared_metrics.withdraw()

    def _observe(self, endpoint: str, status: int, start: float) -> None:
        self.shared_metrics.start()
        self.metrics.requests.labels(endpoint, str(status)).inc()
        self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)

    @web.get("/", include_in_schema=False)
    async def page(self) -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @web.get("/healthz")
    async def healthz(self) -> dict[str, Any]:
        """Liveness of the ingress; ``ready`` once a generator replica has answered (asked here, briefly)."""
        if self._info is None:
            try:
                self._info = await asyncio.wait_for(self.model.info(), HEALTH_PROBE_S)
            except Exception:  # noqa: BLE001 - not ready yet, whatever the reason
                pass
        return {"status": "ok", "ready": self._info is not None, "auth": not self.config.auth.insecure}

    @web.get("/metrics", dependencies=[Depends(require_token)])
    async def metrics_text(self) -> Response:
        return Response(await self.shared_metrics.exposition(), media_type="text/plain; version=0.0.4")

    @web.get("/v1/values", dependencies=[Depends(require_token)])
    async def values(self) -> dict[str, Any]:
        info = await self._generator_info()
        return {
            "values": info["values"],
            "model": info["model"],
            "image_size": info["image_size"],
            "modes": [AUTO, NONE, *[v["id"] for v in info["values"]]],
            "max_values_per_prompt": info["max_values_per_prompt"],
            "bias_probability": info["bias_probability"],
        }

    @web.post("/v1/select", dependencies=[Depends(require_token)], response_model=SelectResponse)
    async def select(self, body: SelectRequest) -> SelectResponse:
        if problems := select_problems(body, self.config.limits):
            raise HTTPException(422, problems)
        selections = await self._call(self.model.select(body.prompts), "select")
        for selection in selections:
            self.metrics.selections.labels(selection["stage"]).inc()
        return SelectResponse(selections=[Selection(**s) for s in selections])

    @web.post("/v1/generate", dependencies=[Depends(require_token)], response_model=GenerateResponse)
    async def generate(self, body: GenerateRequest) -> GenerateResponse:
        start = time.perf_counter()
        job = await self._job(body)
        self.metrics.in_flight.inc()
        try:
            result: GenerationResult = await self._call(self.model.generate(job), "generate")
        finally:
            self.metrics.in_flight.dec()
        return self._response(body, job, result, start)

    async def _job(self, body: GenerateRequest) -> GenerationJob:
        limits = self.config.limits
        problems = limit_problems(body, limits)
        if body.value not in (AUTO, NONE) or body.values:
            info = await self._generator_info()
            known = [v["id"] for v in info["values"]]
            if body.value not in (AUTO, NONE, *known):
                problems.append(
                    {
                        "type": "value",
                        "loc": ["body", "value"],
                        "input": body.value,
                        "msg": f"unknown value; use auto, none or one of {known}",
                    }
                )
            if body.values and (unknown := [v for v in body.values if v not in known]):
                problems.append(
                    {
                        "type": "value",
                        "loc": ["body", "values"],
                        "input": body.values,
                        "msg": f"unknown values {', '.join(unknown)}; known: {known}",
                    }
                )
            if body.values and len(body.values) > info["max_values_per_prompt"]:
                problems.append(
                    {
                        "type": "value",
                        "loc": ["body", "values"],
                        "input": body.values,
                        "msg": f"{len(body.values)} values ({', '.join(body.values)}); this service applies at most "
                        f"{info['max_values_per_prompt']} per prompt (model.max_values_per_prompt)",
                    }
                )
        if problems:
            raise HTTPException(422, problems)
        return GenerationJob(
            prompt=body.prompt,
            seed=secrets.randbelow(2**32) if body.seed is None else body.seed,
            num_images=body.num_images,
            steps=limits.default_steps if body.steps is None else body.steps,
            guidance=limits.default_guidance if body.guidance is None else body.guidance,
            negative_prompt=body.negative_prompt,
            value=body.value,
            values=tuple(body.values or ()),
        )

    def _response(
        self, body: GenerateRequest, job: GenerationJob, result: GenerationResult, start: float
    ) -> GenerateResponse:
        self.metrics.selections.labels(result.selection["stage"]).inc()
        self.metrics.batch_images.observe(result.timings.get("batch_images", job.num_images))
        every = result.applied_all or [[] if applied is None else [applied] for applied in result.applied]
        for ids in every:
            self.metrics.images.labels(image_value_label(ids)).inc()
        images = [
            GeneratedImage(png_base64=base64.b64encode(png).decode("ascii"), value_id=applied, value_ids=ids)
            for png, applied, ids in zip(result.images, result.applied, every, strict=True)
        ]
        return GenerateResponse(
            request_id=uuid.uuid4().hex,
            prompt=job.prompt,
            seed=job.seed,
            steps=job.steps,
            guidance=job.guidance,
            value_mode="values" if body.values else body.value,
            selection=Selection(**result.selection),
            images=images,
            timings=result.timings | {"total_s": time.perf_counter() - start},
        )


def build_app(config: ServiceConfig) -> Any:
    """The Serve application for ``config`` (auth must already be resolved: a token digest or insecure)."""
    if not config.auth.insecure and not config.auth.token_sha256:
        config = config.with_token_hash()
    generator_settings, ingress_settings = config.generator, config.ingress
    plain = config.model_dump(mode="json")

    def per_node(cap: int | None) -> dict[str, int]:  # Serve's option, passed only when set
        return {} if cap is None else {"max_replicas_per_node": cap}

    if config.layout == "combined":
        return Ingress.options(  # type: ignore[attr-defined]  # a Serve deployment
            name="Service",
            num_replicas=generator_settings.num_replicas,
            ray_actor_options={"num_cpus": generator_settings.num_cpus, "num_gpus": generator_settings.num_gpus},
            max_ongoing_requests=ingress_settings.max_ongoing_requests,
            max_queued_requests=ingress_settings.max_queued_requests,
            **per_node(generator_settings.max_replicas_per_node),
        ).bind(None, plain)
    generator = Generator.options(  # type: ignore[attr-defined]
        num_replicas=generator_settings.num_replicas,
        ray_actor_options={"num_cpus": generator_settings.num_cpus, "num_gpus": generator_settings.num_gpus},
        max_ongoing_requests=generator_settings.max_ongoing_requests,
        max_queued_requests=generator_settings.max_queued_requests,
        **per_node(generator_settings.max_replicas_per_node),
    ).bind(plain)
    return Ingress.options(  # type: ignore[attr-defined]
        num_replicas=ingress_settings.num_replicas,
        ray_actor_options={"num_cpus": ingress_settings.num_cpus},
        max_ongoing_requests=ingress_settings.max_ongoing_requests,
        max_queued_requests=ingress_settings.max_queued_requests,
        **per_node(ingress_settings.max_replicas_per_node),
    ).bind(generator, plain)


def app_builder(args: dict[str, Any]) -> Any:
    """Entry point for Ray Serve config files: ``args`` is a :class:`ServiceConfig` mapping. The token is
    read here (``auth.token_file`` or ``$LIVO_SERVE_TOKEN``) and only its digest is deployed."""
    return build_app(parse_config(args, "application args").with_token_hash())
