"""The aligned-generation service: LiVO behind an HTTP API on Ray Serve, with a web page.

- ``config``: the typed :class:`ServiceConfig` (model, values, limits, replicas, auth), also the ``args``
  of the Ray Serve config files in ``services/serve/``;
- ``engine``: :class:`GenerationEngine`, the loaded pipeline + selector and batched generation (no Ray);
- ``batching``: :class:`JobBatcher`, dynamic batching that forms each batch when the pipeline is free;
- ``app``: the Serve deployments and ``build_app`` / ``app_builder``: in the default combined layout
  one ``Service`` deployment whose replicas answer HTTP (FastAPI) and each run a model with a
  ``JobBatcher``; in the split layout an ``Ingress`` (FastAPI) in front of ``Generator`` replicas;
- ``schemas``, ``auth``, ``metrics``: request validation, bearer tokens, Prometheus metrics (shared
  between replicas through Ray's key-value store);
- ``static/``: the web page (HTML/JS/CSS, no external resources);
- ``ray_env``: the Ray Serve settings ``livo serve`` starts Ray with (gRPC handles, a slower
  controller loop), measured to leave more of the cores to the model replicas;
- ``commands``: ``livo serve``.

Importing this package is light; Ray, FastAPI and torch load with ``app`` / ``engine``.
"""

from livo.serve.config import ServiceConfig, load_service_file, parse_config

__all__ = ["ServiceConfig", "load_service_file", "parse_config"]
