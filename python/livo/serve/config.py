"""The service's typed configuration: which model and values it loads, how it scales, what it accepts.

One :class:`ServiceConfig` describes a deployment. It is the ``args`` of the application in a Ray Serve
config file (``services/serve/*.yaml``), so ``serve deploy FILE`` and ``livo serve --config FILE`` read
the same thing. Every field has a default that serves the shipped toy world on CPU; SD 1.5 needs only
``model.base``, ``values.index`` and the device fields (see ``services/serve/sd15.yaml``).

Requests can choose prompts, seeds and sampling settings within ``limits``; they can never choose a
model, a value encoder, an index or any file: those come from this configuration only.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from livo.config import StrictModel, parse_model, read_yaml, resolve_paths
from livo.errors import ConfigError

TOKEN_ENV = "LIVO_SERVE_TOKEN"


class ModelConfig(StrictModel):
    """The frozen base model (a diffusers folder, a hub id or ``builtin:NAME``; by default the toy model
    shipped in the package) and its value encoder (``value_encoder=None``: the ``value_encoder/``
    folder inside the base folder)."""

    base: str = "builtin:toyworld"
    value_encoder: str | None = None
    device: Literal["cpu", "cuda", "auto"] = "auto"
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    # None: what the model folder's livo_pipeline.json says (save_pretrained), else 0.5 and 1.
    bias_probability: float | None = Field(None, ge=0.0, le=1.0)
    # Values applied per prompt: the selector's first k (auto), or at most k named in a request.
    max_values_per_prompt: int | None = Field(None, ge=1, le=8)


class ValuesConfig(StrictModel):
    """Value selection: a built index folder, or (``index=None``) a registry indexed at start-up with
    ``embedder`` (seconds for the small built-in registries; thresholds stay at their defaults)."""

    index: str | None = None
    registry: str = "toyworld"
    embedder: str = "minilm"


class LimitsConfig(StrictModel):
    """What a request may ask for; anything beyond is answered 422 naming the field and the bound."""

    max_prompt_chars: int = Field(300, ge=1, le=10_000)
    max_images: int = Field(8, ge=1, le=8)
    max_steps: int = Field(50, ge=1, le=500)
    max_guidance: float = Field(20.0, ge=0.0, le=100.0)
    max_select_prompts: int = Field(256, ge=1, le=10_000)
    default_steps: int = Field(25, ge=1)
    default_guidance: float = Field(5.0, ge=0.0)
    request_timeout_s: float = Field(120.0, gt=0.0)
    max_body_bytes: int = Field(65_536, ge=1024)

    @model_validator(mode="after")
    def _defaults_within_bounds(self) -> LimitsConfig:
        if self.default_steps > self.max_steps:
            raise ValueError(f"default_steps {self.default_steps} exceeds max_steps {self.max_steps}")
        if self.default_guidance > self.max_guidance:
            raise ValueError(f"default_guidance {self.default_guidance} exceeds max_guidance {self.max_guidance}")
        return self


class GeneratorConfig(StrictModel):
    """The model replicas. Dynamic batching groups concurrent requests into one pipeline call of at most
    ``max_batch_images`` images (1 turns it off). ``batch_wait_timeout_s`` is how long an idle replica
    waits for more requests to fill a call; requests that queued while a call ran go into the next
    call at once. ``max_queued_requests`` bounds the requests waiting for a replica; beyond it the
    service answers 429 at once."""

    num_replicas: int = Field(2, ge=1)
    num_cpus: float = Field(1.0, ge=0.0)
    num_gpus: float = Field(0.0, ge=0.0)
    torch_threads: int | None = Field(None, ge=1)
    batching: bool = True
    max_batch_images: int = Field(8, ge=1)
    batch_wait_timeout_s: float = Field(0.02, ge=0.0)
    max_ongoing_requests: int = Field(16, ge=1)
    max_queued_requests: int = Field(16, ge=1)
    retry_after_s: int = Field(1, ge=0)
    # Ray Serve's placement cap; None: no cap (replicas lost with a node are replaced on the others).
    max_replicas_per_node: int | None = Field(None, ge=1)


class IngressConfig(StrictModel):
    """The HTTP front (auth, validation, metrics, web page): light, so it reserves no CPU. Beyond
    ``max_ongoing_requests + max_queued_requests`` open requests Ray Serve's proxy answers 503."""

    num_replicas: int = Field(1, ge=1)
    num_cpus: float = Field(0.0, ge=0.0)
    max_ongoing_requests: int = Field(64, ge=1)
    max_queued_requests: int = Field(64, ge=1)
    # 1 with num_replicas = nodes: an HTTP ingress on every node, which that node's proxy prefers.
    max_replicas_per_node: int | None = Field(None, ge=1)


class AuthConfig(StrictModel):
    """Bearer-token auth. The token comes from ``token_file`` or the ``LIVO_SERVE_TOKEN`` environment
    variable of the process that builds the app; only its SHA-256 travels to the replicas. ``insecure``
    turns auth off and then the service answers only loopback clients."""

    token_file: str | None = None
    token_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    insecure: bool = False

    @model_validator(mode="after")
    def _one_token_source(self) -> AuthConfig:
        # With a digest the file was never read: a token changed in the file would not be the one served.
        if self.token_file and self.token_sha256:
            raise ValueError(
                "give token_file (--token-file) or token_sha256, not both: with a digest the file is not read"
            )
        return self


class ServiceConfig(StrictModel):
    """A whole deployment; see the module docstring.

    ``layout`` is how the HTTP front and the models are placed. ``combined``: each of the
    ``generator.num_replicas`` replicas answers HTTP itself and runs its own model, one process per
    replica and no hop between them (the ``ingress`` section then sets only the requests a replica
    accepts at once and the proxy's queue). ``split``: ``ingress.num_replicas`` light FastAPI replicas
    forward to the generator replicas through a deployment handle, so the two scale apart (for example
    a CPU front for GPU models). Throughput on the toy world is the same in both (docs/benchmarks.md);
    combined runs one process and ~200 MB fewer for two replicas."""

    layout: Literal["combined", "split"] = "combined"
    model: ModelConfig = Field(default_factory=ModelConfig)
    values: ValuesConfig = Field(default_factory=ValuesConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    ingress: IngressConfig = Field(default_factory=IngressConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)

    @model_validator(mode="after")
    def _batch_fits_a_request(self) -> ServiceConfig:
        if self.generator.max_batch_images < self.limits.max_images:
            raise ValueError(
                f"generator.max_batch_images {self.generator.max_batch_images} is below "
                f"limits.max_images {self.limits.max_images}: a batch must hold the largest request"
            )
        return self

    def with_token_hash(self) -> ServiceConfig:
        """This config with ``auth.token_sha256`` filled from the token file or environment, or a
        :class:`ConfigError` when neither gives a token and ``insecure`` is off (or when the
        environment's token is not the one a given digest was made from)."""
        if self.auth.insecure:
            return self
        if self.auth.token_sha256:
            given = os.environ.get(TOKEN_ENV, "").strip()
            # The digest wins; clients holding the variable's token would get 401 with no word why.
            if given and not hmac.compare_digest(token_digest(given), self.auth.token_sha256):
                raise ConfigError(
                    f"auth: ${TOKEN_ENV} is set but auth.token_sha256 is not its digest; the digest would "
                    f"be served and that token refused: unset ${TOKEN_ENV} or drop auth.token_sha256"
                )
            return self
        token = read_token(self.auth.token_file)
        auth = self.auth.model_copy(update={"token_sha256": token_digest(token), "token_file": None})
        return self.model_copy(update={"auth": auth})


def token_digest(token: str) -> str:
    """SHA-256 hex digest of a token: what the replicas compare against."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def read_token(token_file: str | None) -> str:
    """The bearer token from ``token_file`` (first line) or ``$LIVO_SERVE_TOKEN``; at least 16 characters."""
    if token_file and os.environ.get(TOKEN_ENV, "").strip():
        # Either would silently lose to the other; clients holding the other token would get 401.
        raise ConfigError(f"auth: both auth.token_file {token_file} and ${TOKEN_ENV} are set; give one")
    if token_file:
        path = Path(token_file).expanduser()
        try:
            lines = path.read_text(encoding="utf-8").strip().splitlines()
        except FileNotFoundError as error:
            raise ConfigError(f"auth.token_file {token_file}: does not exist") from error
        token = lines[0].strip() if lines else ""
        source = f"auth.token_file {token_file}"
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
        source = f"${TOKEN_ENV}"
        if not token:
            raise ConfigError(
                f"auth: no token; set {TOKEN_ENV} or auth.token_file (--token-file), or pass --insecure to serve "
                "without auth on loopback only"
            )
    if len(token) < 16:
        raise ConfigError(f"{source}: the token must be at least 16 characters, got {len(token)}")
    return token


def parse_config(data: Any, source: str = "<config>") -> ServiceConfig:
    """Validate a mapping into a :class:`ServiceConfig`; errors name the source and the field."""
    return parse_model(ServiceConfig, data or {}, source)


# Fields that hold paths: relative ones are relative to the YAML file's folder (``livo.config``).
PATH_KEYS = ("value_encoder", "index", "token_file")
PATH_KEYS_IF_PRESENT = ("base", "registry")  # also a hub id, builtin:NAME or a built-in registry name


def serve_start_options(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The options of a Ray Serve config file that ``serve.start`` takes besides ``http_options``:
    ``proxy_location`` (``EveryNode``, ``HeadOnly``, ``Disabled``), which ``serve deploy`` reads from
    the file and ``livo serve`` passes on (it was ignored: proxies went to every node)."""
    data = read_yaml(path, "service config")
    return {"proxy_location": data["proxy_location"]} if data.get("proxy_location") else {}


def load_service_file(path: str | os.PathLike[str]) -> tuple[ServiceConfig, dict[str, Any]]:
    """Read a Ray Serve config file (``applications[0].args`` is the service config) or a bare service
    config; returns the config and the file's ``http_options`` (empty when absent)."""
    data = resolve_paths(read_yaml(path, "service config"), Path(path).parent, PATH_KEYS, PATH_KEYS_IF_PRESENT)
    http = dict(data.get("http_options") or {})
    if "applications" in data:
        applications = data["applications"] or []
        if len(applications) != 1:
            raise ConfigError(f"{path}: applications: expected exactly one application, got {len(applications)}")
        return parse_config(applications[0].get("args") or {}, f"{path}: applications[0].args"), http
    return parse_config(data, str(path)), http
