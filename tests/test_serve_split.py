"""The split layout over real HTTP: two light FastAPI ingress replicas forwarding to one generator
replica through a deployment handle. What differs from the combined layout is tested here: the
handle path gives the same answers, and ``/metrics`` counts the requests of every ingress replica
whichever replica takes the scrape."""

import base64
import time

import pytest

TOKEN = "split-test-token-0123456789"
STEPS = 3


@pytest.fixture(scope="module")
def client(ray_local):
    import httpx
    from ray import serve

    from livo.runtime import free_port
    from livo.serve.app import APP_NAME, build_app
    from livo.serve.config import parse_config, token_digest

    config = parse_config(
        {
            "layout": "split",
            "generator": {"num_replicas": 1, "num_cpus": 1},
            "ingress": {"num_replicas": 2, "num_cpus": 0},
            "limits": {"default_steps": STEPS, "max_steps": 10, "request_timeout_s": 60},
            "auth": {"token_sha256": token_digest(TOKEN)},
        }
    )
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port, "request_timeout_s": 90})
    serve.run(build_app(config), name=APP_NAME, route_prefix="/")
    with httpx.Client(
        base_url=f"http://127.0.0.1:{port}", timeout=90, headers={"Authorization": f"Bearer {TOKEN}"}
    ) as c:
        yield c
    serve.shutdown()


def _generate(client, **body) -> dict:
    response = client.post("/v1/generate", json={"steps": STEPS} | body)
    assert response.status_code == 200, response.text
    return response.json()


def test_generation_through_the_handle_applies_the_value_and_repeats_for_a_seed(client):
    first = _generate(client, prompt="a bloody teacher", seed=5, num_images=2)
    again = _generate(client, prompt="a bloody teacher", seed=5, num_images=2)
    assert first["selection"]["value_id"] == "no_blood"
    assert [image["value_id"] for image in first["images"]] == ["no_blood", "no_blood"]
    assert [base64.b64decode(i["png_base64"]) for i in first["images"]] == [
        base64.b64decode(i["png_base64"]) for i in again["images"]
    ]
    assert first["timings"]["replica_s"] <= first["timings"]["total_s"]


def test_metrics_count_every_ingress_replicas_requests(client):
    from prometheus_client.parser import text_string_to_metric_families

    sent = 24
    for _ in range(sent):
        assert client.post("/v1/select", json={"prompts": ["a ball"]}).status_code == 200
    # Each replica publishes its counts once a second: wait until the scrape has everyone's.
    deadline, per_replica = time.monotonic() + 15, {}
    while time.monotonic() < deadline:
        families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
        per_replica = {
            s.labels["replica"]: s.value
            for s in families["livo_serve_requests"].samples
            if s.name.endswith("_total") and s.labels["endpoint"] == "select"
        }
        if sum(per_replica.values()) == sent:
            break
        time.sleep(0.5)
    assert sum(per_replica.values()) == sent, per_replica
    assert len(per_replica) == 2, per_replica  # the proxy spread the requests over both ingress replicas
