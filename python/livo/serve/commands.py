"""``livo serve``: run the aligned-generation service (Ray Serve + FastAPI) on this machine or a cluster."""

from __future__ import annotations

import argparse
from typing import Any

from livo.arg_types import int_at_least, port_number
from livo.serve.ray_env import apply_serve_environment


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve value-aligned generation over HTTP (Ray Serve) with a web page",
        description="Start the LiVO generation service: POST /v1/generate, POST /v1/select, GET /v1/values, "
        "GET /healthz, GET /metrics and a web page at /. Loads the shipped toy world unless the config names "
        "another model. A bearer token ($LIVO_SERVE_TOKEN or --token-file) is required unless --insecure.",
    )
    parser.add_argument("--config", help="Ray Serve config file (services/serve/*.yaml) or a bare service config")
    parser.add_argument("--host", help="address to listen on (default: the file's http_options, else 127.0.0.1)")
    parser.add_argument("--port", type=port_number, help="port (default: the file's http_options, else 8000)")
    parser.add_argument("--token-file", help="file whose first line is the bearer token (else $LIVO_SERVE_TOKEN)")
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="no auth; allowed only on a loopback host, and only loopback clients are answered",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a service config field, dotted (e.g. --set limits.max_steps=30; value parsed as YAML)",
    )
    parser.add_argument("--replicas", type=int, help="model replicas (overrides generator.num_replicas)")
    parser.add_argument(
        "--layout",
        choices=("combined", "split"),
        help="combined: each replica answers HTTP and runs a model (default); split: FastAPI "
        "ingress replicas in front of model replicas (overrides the config)",
    )
    parser.add_argument(
        "--proxy",
        choices=("serve", "haproxy"),
        default="serve",
        help="what receives HTTP connections: Ray Serve's proxy actor (default), or HAProxy in "
        "front of each replica's own HTTP server (Ray's direct ingress, experimental; 1/8 the CPU "
        "per request; HAProxy's stats and exporter ports on 127.0.0.1). Applies to the "
        "local Ray this command starts",
    )
    parser.add_argument("--ray-address", help="join this Ray cluster instead of starting a local one")
    parser.add_argument(
        "--ray-token-file",
        help="Ray's auth token (a file of mode 0600): needed to join a cluster off loopback "
        "(else $RAY_AUTH_TOKEN_PATH); for a local Ray, the token it is started with",
    )
    parser.add_argument("--num-cpus", type=int_at_least(1, 65536), help="CPUs of the local Ray instance (default: all)")
    parser.set_defaults(run=run_serve, extras=("serve",))


def service_settings(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The service config and HTTP options the arguments describe; refuses ``--insecure`` off loopback."""
    from livo.config import apply_overrides
    from livo.errors import ConfigError
    from livo.overrides import parse_overrides
    from livo.runtime import is_loopback
    from livo.serve.config import ServiceConfig, load_service_file, parse_config

    config, http = load_service_file(args.config) if args.config else (ServiceConfig(), {})
    if getattr(args, "overrides", None):
        settings = apply_overrides(config.model_dump(), parse_overrides(args.overrides), "--set")
        config = parse_config(settings, "livo serve --set")
    http = {"host": "127.0.0.1", "port": 8000} | http
    if args.host:
        http["host"] = args.host
    if args.port is not None:
        http["port"] = args.port
    # The proxy's timeout is a backstop a little above the service's own (504): a file's value that a
    # larger limits.request_timeout_s outgrew would answer 408 first.
    backstop = config.limits.request_timeout_s + 5.0
    given = http.get("request_timeout_s")
    http["request_timeout_s"] = max(float(given), backstop) if isinstance(given, int | float) else backstop
    auth = config.auth.model_copy(
        update={
            key: value for key, value in (("insecure", args.insecure or None), ("token_file", args.token_file)) if value
        }
    )
    if auth.insecure and not is_loopback(str(http["host"])):
        raise ConfigError(
            f"--insecure: refused on host {http['host']!r}; without auth the service may listen "
            "on a loopback address only (127.0.0.1, ::1)"
        )
    update: dict[str, Any] = {"auth": auth}
    if args.replicas is not None:
        update["generator"] = config.generator.model_copy(update={"num_replicas": args.replicas})
    if args.layout is not None:
        update["layout"] = args.layout
    config = parse_config(config.model_copy(update=update).model_dump(), "livo serve arguments")
    return config.with_token_hash(), http


def run_serve(args: argparse.Namespace) -> int:
    import logging
    import signal
    import sys
    import time

    from livo.errors import ConfigError
    from livo.runtime import is_loopback, is_verbose, start_ray

    config, http = service_settings(args)
    settings: dict[str, str] = {}
    if args.ray_address:  # a running cluster was started with its own environment
        if args.proxy != "serve":
            raise ConfigError(
                "--proxy haproxy: applies to a local Ray only; start the cluster with the settings "
                "of livo.serve.ray_env.HAPROXY_ENVIRONMENT instead"
            )
    else:
        settings = apply_serve_environment(args.proxy)
    # A local Ray listens on loopback only; it also asks for Ray's auth token when the service itself
    # listens on the network, so that nothing reachable from there runs unauthenticated.
    ray_token = start_ray(
        args.ray_address, args.num_cpus, authenticate=not is_loopback(str(http["host"])), token_file=args.ray_token_file
    )
    import ray
    from ray import serve

    from livo.serve.app import APP_NAME, build_app

    # Serve's controller, proxy and replicas log every deployment step and request at INFO; by
    # default the console gets their warnings only (`livo -v serve`: everything, access lines too).
    logging_config = {"log_level": "INFO" if is_verbose() else "WARNING"}
    logging.getLogger("ray.serve").setLevel(logging_config["log_level"])  # this process's Serve client
    from livo.serve.config import serve_start_options

    options = serve_start_options(args.config) if args.config else {}
    serve.start(http_options=http, logging_config=logging_config, **options)
    serve.run(build_app(config), name=APP_NAME, route_prefix="/", logging_config=logging_config)
    mode = "WITHOUT auth (loopback only)" if config.auth.insecure else "bearer-token auth"
    print(
        f"livo serve: http://{http['host']}:{http['port']}/ ({config.generator.num_replicas} model replicas, "
        f"{config.layout} layout, {mode}, {args.proxy} proxy); Ctrl-C stops",
        flush=True,
    )
    if ray_token is not None:
        print(f"livo serve: Ray uses token authentication (token file {ray_token})", flush=True)
    if args.proxy == "haproxy":
        print(
            "livo serve: HAProxy's read-only stats page is on port "
            f"{settings['RAY_SERVE_HAPROXY_STATS_PORT']} and its Prometheus exporter on "
            f"{settings['RAY_SERVE_HAPROXY_METRICS_PORT']}, both on 127.0.0.1",
            flush=True,
        )
    # SIGTERM (containers, process managers) stops the service as cleanly as Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    finally:
        if args.ray_address:
            serve.shutdown()
        else:
            # The local Ray and Serve's own actors end with this process; deleting the application
            # first lets its replicas finish their requests. (serve.shutdown() would also have the
            # controller kill itself mid-task, which Ray reports as a failed task on every clean stop.)
            serve.delete(APP_NAME)
        ray.shutdown()
