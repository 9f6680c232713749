"""The service's configuration, token handling and the ``--insecure`` rule, without starting anything."""

import argparse
from pathlib import Path

import pytest

from livo.errors import ConfigError
from livo.serve.config import ServiceConfig, load_service_file, parse_config, token_digest

SERVICES = Path(__file__).resolve().parents[1] / "services" / "serve"
TOKEN = "a-long-enough-test-token"


def _args(**overrides) -> argparse.Namespace:
    values = {
        "config": None,
        "host": None,
        "port": None,
        "token_file": None,
        "insecure": False,
        "replicas": None,
        "layout": None,
    }
    return argparse.Namespace(**(values | overrides))


@pytest.mark.parametrize("name", ["toy.yaml", "sd15.yaml"])
def test_shipped_serve_configs_are_valid(name):
    config, http = load_service_file(SERVICES / name)
    assert config.generator.num_replicas == 2
    assert {"host", "port", "request_timeout_s"} <= set(http)
    assert http["request_timeout_s"] > config.limits.request_timeout_s


def test_the_proxy_timeout_stays_above_a_raised_request_timeout():
    """The shipped file's 125 s proxy timeout stayed when limits.request_timeout_s was raised past it:
    clients got the proxy's 408 before the service's own 504."""
    from livo.serve.commands import service_settings

    args = _args(config=str(SERVICES / "toy.yaml"), insecure=True, overrides=["limits.request_timeout_s=300"])
    config, http = service_settings(args)
    assert config.limits.request_timeout_s == 300 and http["request_timeout_s"] == 305
    _, http = service_settings(_args(config=str(SERVICES / "toy.yaml"), insecure=True))
    assert http["request_timeout_s"] == 125  # the file's own, already above its 120


def test_toy_config_serves_the_shipped_toy_world_on_cpu():
    config, _ = load_service_file(SERVICES / "toy.yaml")
    assert config.model.base == "builtin:toyworld" and config.values.registry == "toyworld"
    assert config.generator.num_gpus == 0 and config.generator.num_cpus == 1


def test_unknown_config_fields_are_refused_with_their_path():
    with pytest.raises(ConfigError, match=r"generator\.replicas: Extra inputs"):
        parse_config({"generator": {"replicas": 3}}, "test.yaml")


def test_a_batch_smaller_than_the_largest_request_is_refused():
    with pytest.raises(ConfigError, match="max_batch_images 4 is below limits.max_images 8"):
        parse_config({"generator": {"max_batch_images": 4}})


def test_without_a_token_the_service_refuses_to_start(monkeypatch):
    from livo.serve.commands import service_settings

    monkeypatch.delenv("LIVO_SERVE_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="LIVO_SERVE_TOKEN"):
        service_settings(_args())


def test_a_short_token_is_refused(monkeypatch):
    monkeypatch.setenv("LIVO_SERVE_TOKEN", "short")
    with pytest.raises(ConfigError, match="at least 16 characters"):
        ServiceConfig().with_token_hash()


def test_only_the_token_digest_is_deployed(tmp_path, monkeypatch):
    from livo.serve.commands import service_settings

    monkeypatch.delenv("LIVO_SERVE_TOKEN", raising=False)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    config, http = service_settings(_args(token_file=str(token_file)))
    assert config.auth.token_sha256 == token_digest(TOKEN)
    assert TOKEN not in config.model_dump_json()
    assert http["host"] == "127.0.0.1"
    # What the replicas receive validates again: the digest alone, the file it came from left out.
    assert config.auth.token_file is None and parse_config(config.model_dump(), "replica").auth == config.auth


def test_the_file_s_proxy_location_is_passed_on():
    """livo serve read only http_options and the application's args: proxy_location was ignored."""
    from livo.serve.config import serve_start_options

    assert serve_start_options(SERVICES / "toy.yaml") == {"proxy_location": "HeadOnly"}
    assert serve_start_options(SERVICES / "sd15.yaml") == {"proxy_location": "EveryNode"}


def test_a_token_file_beside_the_token_variable_is_refused(tmp_path, monkeypatch):
    """The file won silently: a service started as its config's comment said (LIVO_SERVE_TOKEN=...)
    served another token, and its clients got 401."""
    from livo.serve.commands import service_settings

    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    monkeypatch.setenv("LIVO_SERVE_TOKEN", "another-token-of-enough-length")
    with pytest.raises(ConfigError, match=r"both auth.token_file .*token and \$LIVO_SERVE_TOKEN are set"):
        service_settings(_args(token_file=str(token_file)))


def test_a_token_file_beside_a_digest_is_refused(tmp_path):
    """The digest won and the file was never read: a token rotated in the file was not the one served."""
    with pytest.raises(ConfigError, match="give token_file .--token-file. or token_sha256, not both"):
        parse_config({"auth": {"token_file": str(tmp_path / "token"), "token_sha256": token_digest(TOKEN)}}, "test")


def test_a_token_variable_beside_a_digest_must_be_its_token(monkeypatch):
    """The digest won and the variable was ignored without a word: clients holding the variable's
    token got 401. The same token beside its digest is fine."""
    config = parse_config({"auth": {"token_sha256": token_digest(TOKEN)}}, "test")
    monkeypatch.setenv("LIVO_SERVE_TOKEN", "another-token-of-enough-length")
    with pytest.raises(ConfigError, match=r"\$LIVO_SERVE_TOKEN is set but auth.token_sha256 is not its digest"):
        config.with_token_hash()
    monkeypatch.setenv("LIVO_SERVE_TOKEN", TOKEN)
    assert config.with_token_hash().auth.token_sha256 == token_digest(TOKEN)


def test_insecure_is_refused_off_loopback():
    from livo.serve.commands import service_settings

    with pytest.raises(ConfigError, match="--insecure: refused on host '0.0.0.0'"):
        service_settings(_args(insecure=True, host="0.0.0.0"))


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_insecure_is_allowed_on_loopback(host, monkeypatch):
    from livo.serve.commands import service_settings

    monkeypatch.delenv("LIVO_SERVE_TOKEN", raising=False)
    config, http = service_settings(_args(insecure=True, host=host, replicas=1))
    assert config.auth.insecure and config.auth.token_sha256 is None
    assert config.generator.num_replicas == 1 and http["host"] == host


def test_the_layout_is_combined_unless_the_config_or_command_line_says_split(monkeypatch):
    from livo.serve.commands import service_settings

    monkeypatch.setenv("LIVO_SERVE_TOKEN", TOKEN)
    assert service_settings(_args())[0].layout == "combined"
    assert service_settings(_args(layout="split"))[0].layout == "split"
    with pytest.raises(ConfigError, match="layout"):
        parse_config({"layout": "sideways"}, "test")


def test_insecure_mode_answers_loopback_clients_only():
    from fastapi import HTTPException

    from livo.serve.auth import BearerAuth
    from livo.serve.config import AuthConfig

    auth = BearerAuth(AuthConfig(insecure=True))
    auth.check({}, "127.0.0.1")
    with pytest.raises(HTTPException) as refused:
        auth.check({}, "10.1.2.3")
    assert refused.value.status_code == 403


def test_bearer_auth_accepts_only_the_configured_token():
    from fastapi import HTTPException

    from livo.serve.auth import BearerAuth
    from livo.serve.config import AuthConfig

    auth = BearerAuth(AuthConfig(token_sha256=token_digest(TOKEN)))
    auth.check({"authorization": f"Bearer {TOKEN}"}, "10.1.2.3")
    for header in ({}, {"authorization": TOKEN}, {"authorization": f"Bearer {TOKEN}x"}, {"authorization": "Basic x"}):
        with pytest.raises(HTTPException) as refused:
            auth.check(header, "127.0.0.1")
        assert refused.value.status_code == 401


def test_the_token_is_checked_before_the_body_is_read(monkeypatch):
    """FastAPI reads and parses a route's JSON body before the route's dependencies run, so an
    anonymous client could make a replica read up to the body limit; the middleware answers first."""
    import asyncio

    from livo.serve.app import web
    from livo.serve.auth import BearerAuth
    from livo.serve.config import AuthConfig

    monkeypatch.setattr(web.state, "auth", BearerAuth(AuthConfig(token_sha256=token_digest(TOKEN))), raising=False)
    read: list[bytes] = []
    sent: list[dict] = []

    async def receive() -> dict:
        read.append(b'{"prompt": ')
        return {"type": "http.request", "body": b'{"prompt": ', "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    for headers in ([], [(b"authorization", b"Bearer not-the-token-at-all")]):
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/v1/generate",
            "raw_path": b"/v1/generate",
            "query_string": b"",
            "headers": [(b"content-type", b"application/json"), *headers],
            "client": ("10.1.2.3", 40000),
            "server": ("127.0.0.1", 8000),
            "scheme": "http",
            "http_version": "1.1",
            "root_path": "",
        }
        sent.clear()
        asyncio.run(web(scope, receive, send))
        assert sent[0]["status"] == 401 and not read


def test_the_serve_command_is_registered():
    from livo.cli import build_parser

    args = build_parser().parse_args(["serve", "--insecure", "--port", "8123"])
    assert args.insecure and args.port == 8123 and args.run.__name__ == "run_serve"


class _PendingCall:
    """Stands in for a generator's ``DeploymentResponse`` that never answers (or fails at once)."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error
        self.cancelled = False

    def __await__(self):
        import asyncio

        if self.error is not None:
            raise self.error
        return asyncio.get_event_loop().create_future().__await__()

    def cancel(self) -> None:
        self.cancelled = True


def _bounded(call, timeout_s=0.05):
    import asyncio

    from fastapi import HTTPException

    from livo.serve.app import bounded_call
    from livo.serve.metrics import ServiceMetrics

    metrics = ServiceMetrics()
    with pytest.raises(HTTPException) as answer:
        asyncio.run(bounded_call(call, "generate", timeout_s, 3, metrics))
    return answer.value, metrics


def test_a_call_past_the_timeout_is_cancelled_and_answered_504():
    call = _PendingCall()
    answer, metrics = _bounded(call)
    assert answer.status_code == 504 and "no answer within 0.05 s" in answer.detail
    assert call.cancelled
    assert metrics.rejected.labels("timeout")._value.get() == 1


def test_a_full_generator_queue_is_answered_429_with_retry_after():
    from ray.serve.exceptions import BackPressureError

    answer, metrics = _bounded(_PendingCall(BackPressureError(num_queued_requests=4, max_queued_requests=4)))
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "3"
    assert metrics.rejected.labels("queue_full")._value.get() == 1


def test_a_failed_replica_is_answered_500_without_internals():
    answer, _ = _bounded(_PendingCall(RuntimeError("CUDA error at /secret/path")))
    assert answer.status_code == 500 and "/secret/path" not in answer.detail


def test_in_the_combined_layout_a_full_batcher_is_answered_429_and_a_timed_out_job_never_runs():
    """The combined layout's model is in the replica: bounded_call awaits the batcher directly."""
    import asyncio

    from fastapi import HTTPException

    from livo.serve.app import bounded_call
    from livo.serve.batching import JobBatcher
    from livo.serve.metrics import ServiceMetrics

    async def scenario():
        release, ran = asyncio.Event(), []

        async def run(jobs: list[str]) -> list[str]:
            ran.append(list(jobs))
            await release.wait()
            return jobs

        batcher, metrics = JobBatcher(run, lambda job: 1, 1, 0.0, max_jobs=2), ServiceMetrics()

        def call(job: str, timeout_s: float):
            return bounded_call(batcher.submit(job), "generate", timeout_s, 3, metrics)

        running = asyncio.ensure_future(call("running", 10.0))
        await asyncio.sleep(0.01)
        with pytest.raises(HTTPException) as timed_out:
            await call("gives up", 0.05)  # waits behind "running", then its caller gives up
        queued = asyncio.ensure_future(call("queued", 10.0))
        await asyncio.sleep(0.01)
        with pytest.raises(HTTPException) as full:
            await call("refused", 10.0)
        release.set()
        return timed_out.value, full.value, await running, await queued, ran, metrics

    timed_out, full, running, queued, ran, metrics = asyncio.run(scenario())
    assert timed_out.status_code == 504
    assert full.status_code == 429 and full.headers["Retry-After"] == "3" and "limit 2" in full.detail
    assert (running, queued) == ("running", "queued")
    assert ran == [["running"], ["queued"]]  # the job whose caller gave up was dropped, never run
    assert metrics.rejected.labels("timeout")._value.get() == 1
    assert metrics.rejected.labels("queue_full")._value.get() == 1


def test_merged_metrics_keep_each_replicas_series_apart_under_a_replica_label():
    from prometheus_client.parser import text_string_to_metric_families

    from livo.serve.metrics import ServiceMetrics, merge_snapshots

    first, second = ServiceMetrics(), ServiceMetrics()
    first.requests.labels("generate", "200").inc(3)
    second.requests.labels("generate", "200").inc(4)
    second.requests.labels("select", "422").inc()
    first.latency.labels("generate").observe(0.3)
    second.in_flight.inc(2)
    text = merge_snapshots({"r1": first.exposition(), "r2": second.exposition()}).decode()

    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = {
        (s.labels["replica"], s.labels["endpoint"], s.labels["status"]): s.value
        for s in families["livo_serve_requests"].samples
        if s.name.endswith("_total")
    }
    assert requests == {("r1", "generate", "200"): 3, ("r2", "generate", "200"): 4, ("r2", "select", "422"): 1}
    assert {s.labels["replica"]: s.value for s in families["livo_serve_in_flight"].samples} == {"r1": 0, "r2": 2}
    counts = {
        s.labels["replica"]: s.value
        for s in families["livo_serve_request_seconds"].samples
        if s.name.endswith("_count")
    }
    assert counts == {"r1": 1}
    assert text.count("# TYPE livo_serve_requests_total counter") == 1  # one family block, both replicas in it


def test_serve_environment_fills_defaults_and_keeps_what_is_set():
    from livo.serve.ray_env import HAPROXY_ENVIRONMENT, SERVE_ENVIRONMENT, apply_serve_environment

    environ = {"RAY_SERVE_CONTROL_LOOP_INTERVAL_S": "0.1", "UNRELATED": "x"}
    applied = apply_serve_environment("serve", environ)
    assert applied == SERVE_ENVIRONMENT | {"RAY_SERVE_CONTROL_LOOP_INTERVAL_S": "0.1"}
    assert environ["UNRELATED"] == "x" and set(SERVE_ENVIRONMENT) <= set(environ)
    assert not set(HAPROXY_ENVIRONMENT) & set(environ)


def test_haproxy_environment_enables_direct_ingress_on_free_ports_unless_set():
    from livo.serve.ray_env import HAPROXY_ENVIRONMENT, HAPROXY_PORT_VARIABLES, apply_serve_environment

    environ = {"RAY_SERVE_HAPROXY_STATS_PORT": "18404"}
    applied = apply_serve_environment("haproxy", environ)
    assert {name: applied[name] for name in HAPROXY_ENVIRONMENT} == HAPROXY_ENVIRONMENT
    assert applied["RAY_SERVE_ENABLE_HA_PROXY"] == "1" and applied["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "1"
    assert applied["RAY_SERVE_HAPROXY_STATS_PORT"] == "18404"
    ports = [int(applied[name]) for name in HAPROXY_PORT_VARIABLES]
    assert len(set(ports)) == len(ports) and all(1024 <= port < 65536 for port in ports)
    with pytest.raises(ValueError, match="proxy"):
        apply_serve_environment("nginx", {})


def test_a_bad_command_line_override_is_a_config_error_naming_the_field():
    import argparse

    from livo.serve.commands import service_settings

    args = argparse.Namespace(
        config=None, host=None, port=None, insecure=True, token_file=None, replicas=0, layout=None
    )
    with pytest.raises(
        ConfigError, match=r"livo serve arguments: field generator.num_replicas: Input should be greater"
    ):
        service_settings(args)
