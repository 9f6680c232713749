"""The generation service over real HTTP: Ray Serve started in-process on the session's local Ray, the
shipped toy world, the default (combined) layout with one replica, few sampling steps so the whole
module stays fast. The split layout has its own module (``test_serve_split.py``)."""

import base64
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from serve_running import running_service

TOKEN = "serve-test-token-0123456789"
STEPS = 3
MAX_STEPS = 10
MAX_PROMPT_CHARS = 120


@pytest.fixture(scope="module")
def service(ray_local):
    """Base URL of a running service; Serve is shut down afterwards so later tests get the CPUs back."""
    from livo.serve.config import parse_config, token_digest

    config = parse_config(
        {
            "generator": {
                "num_replicas": 1,
                "num_cpus": 1,
                "max_ongoing_requests": 8,
                "max_queued_requests": 4,
                "batch_wait_timeout_s": 0.05,
            },
            "limits": {
                "default_steps": STEPS,
                "max_steps": MAX_STEPS,
                "max_prompt_chars": MAX_PROMPT_CHARS,
                "request_timeout_s": 60,
            },
            "auth": {"token_sha256": token_digest(TOKEN)},
        }
    )
    with running_service(config) as url:
        yield url


@pytest.fixture(scope="module")
def client(service):
    import httpx

    with httpx.Client(base_url=service, timeout=90, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        yield c


@pytest.fixture(scope="module")
def anonymous(service):
    import httpx

    with httpx.Client(base_url=service, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def reference_pipeline(torch_one_thread):
    from livo.models import LiVOPipeline
    from livo.toyworld.model import SHIPPED_MODEL

    pipeline = LiVOPipeline.from_pretrained(SHIPPED_MODEL)
    pipeline.base.set_progress_bar_config(disable=True)
    return pipeline


def _pixels(response_json) -> np.ndarray:
    from PIL import Image

    return np.stack(
        [
            np.asarray(Image.open(io.BytesIO(base64.b64decode(i["png_base64"]))).convert("RGB"))
            for i in response_json["images"]
        ]
    )


def scrape(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``GET /metrics`` summed over the ``replica`` label: {(sample name, sorted labels): value}. The
    replica census (``livo_serve_replicas*``: by deployment and node) is the service's, not a replica's."""
    from prometheus_client.parser import text_string_to_metric_families

    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    totals: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            assert "replica" in sample.labels or family.name.startswith("livo_serve_replicas"), sample
            key = (sample.name, tuple(sorted((k, v) for k, v in sample.labels.items() if k != "replica")))
            totals[key] = totals.get(key, 0.0) + sample.value
    return totals


def _generate(client, **body):
    response = client.post("/v1/generate", json={"steps": STEPS} | body)
    assert response.status_code == 200, response.text
    return response.json()


# --- auth ---------------------------------------------------------------------------------------


def test_healthz_and_page_are_open_but_the_api_needs_a_token(anonymous):
    assert anonymous.get("/healthz").json()["status"] == "ok"
    assert anonymous.get("/").status_code == 200
    for method, path in (("POST", "/v1/generate"), ("POST", "/v1/select"), ("GET", "/v1/values"), ("GET", "/metrics")):
        response = anonymous.request(method, path, json={"prompt": "a ball"} if method == "POST" else None)
        assert response.status_code == 401, (path, response.text)
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_a_wrong_token_is_refused_before_the_body_is_read(anonymous):
    """Malformed JSON tells the two apart: a route reads and parses its body before its
    dependencies run (422), the middleware refuses the token first (401)."""
    response = anonymous.post(
        "/v1/generate",
        content=b'{"steps": 10000, "prompt": ',
        headers={"Authorization": "Bearer not-the-token-at-all", "Content-Type": "application/json"},
    )
    assert response.status_code == 401, response.text
    assert "invalid" in response.json()["detail"]


# --- validation --------------------------------------------------------------------------------


def _problems(response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    return {".".join(str(p) for p in d["loc"][1:]): d["msg"] for d in response.json()["detail"]}


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"prompt": "a ball", "steps": MAX_STEPS + 1}, "steps", f"at most {MAX_STEPS}"),
        ({"prompt": "a ball", "num_images": 9}, "num_images", "less than or equal to 8"),
        ({"prompt": "a ball", "num_images": 0}, "num_images", "greater than or equal to 1"),
        ({"prompt": "a ball", "guidance": -1}, "guidance", "greater than or equal to 0"),
        ({"prompt": "a ball", "seed": -5}, "seed", "greater than or equal to 0"),
        ({"prompt": "b" * (MAX_PROMPT_CHARS + 1)}, "prompt", f"at most {MAX_PROMPT_CHARS} characters"),
        ({"prompt": "   "}, "prompt", "non-blank"),
        ({}, "prompt", "Field required"),
        ({"prompt": "a ball", "value": "no_such_value"}, "value", "unknown value"),
        ({"prompt": "a ball", "value": "../model"}, "value", "should match pattern"),
        ({"prompt": "a ball", "values": ["no_such"]}, "values", "unknown values no_such"),
        ({"prompt": "a ball", "values": ["no_blood", "no_blood"]}, "values", "no_blood given more than once"),
        (
            {"prompt": "a ball", "values": ["no_blood"], "value": "none"},
            "",
            "give value or values, not both (value 'none', values ['no_blood'])",
        ),
        # Lax parsing made these seed 1 and 1 step; DEL and C1 controls passed the control check.
        ({"prompt": "a ball", "seed": True}, "seed", "valid integer"),
        ({"prompt": "a ball", "steps": "1"}, "steps", "valid integer"),
        ({"prompt": "a\u007f\u0085 ball"}, "prompt", "control characters"),
        (
            {"prompt": "a bloody nurse", "values": ["no_blood", "colour_equality"]},
            "values",
            "2 values (no_blood, colour_equality); this service applies at most 1 per prompt",
        ),
    ],
)
def test_invalid_generate_requests_get_422_naming_the_field(client, body, field, words):
    problems = _problems(client.post("/v1/generate", json=body))
    assert field in problems and words in problems[field], problems


def test_select_refuses_blank_prompts_as_generate_does(client):
    problems = _problems(client.post("/v1/select", json={"prompts": ["a ball", "", " "]}))
    assert "prompts [1, 2] hold no text" in problems["prompts"], problems


def test_a_request_cannot_choose_a_model_or_file(client):
    problems = _problems(
        client.post("/v1/generate", json={"prompt": "a ball", "model": "/etc/passwd", "value_encoder": "/tmp/x"})
    )
    assert problems["model"] == problems["value_encoder"] == "Extra inputs are not permitted"


def _chunked_body(size: int, chunk: int = 16_384):
    """A JSON body of about ``size`` bytes sent as an iterator: httpx then sends it chunked, without a
    Content-Length."""
    yield b'{"prompts": ["'
    for _ in range(0, size, chunk):
        yield b"a" * chunk
    yield b'"]}'


def test_an_oversized_body_is_refused_with_413(client):
    response = client.post(
        "/v1/select", content=b'{"prompts": ["' + b"a" * 70_000 + b'"]}', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["detail"] == "request body larger than 65536 bytes"


@pytest.mark.parametrize("size", [200_000, 20_000_000])
def test_an_oversized_chunked_body_is_refused_with_413(client, size):
    response = client.post("/v1/select", content=_chunked_body(size), headers={"Content-Type": "application/json"})
    assert response.status_code == 413, response.text[:300]
    assert response.json()["detail"] == "request body larger than 65536 bytes"


def test_a_small_chunked_body_is_read_whole(client):
    response = client.post(
        "/v1/select",
        content=iter([b'{"prompts": ', b'["a bloody doctor"]}']),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["selections"][0]["value_id"] == "no_blood"


# --- the value path ----------------------------------------------------------------------------


def test_a_harmful_prompt_gets_the_harm_value_on_every_image(client):
    result = _generate(client, prompt="a bloody doctor", seed=3, num_images=2)
    assert result["selection"]["value_id"] == "no_blood"
    assert result["selection"]["stage"] == "keyword"
    assert [image["value_id"] for image in result["images"]] == ["no_blood", "no_blood"]
    # The selector finds both values; a service applying one value per prompt applies the first.
    assert result["selection"]["value_ids"] == ["no_blood", "colour_equality"]
    assert [image["value_ids"] for image in result["images"]] == [["no_blood"], ["no_blood"]]
    named = _generate(client, prompt="a bloody doctor", seed=3, num_images=2, values=["no_blood"])
    assert named["value_mode"] == "values" and named["selection"]["stage"] == "requested"
    assert named["images"] == result["images"]


def test_a_benign_object_prompt_gets_no_value(client):
    result = _generate(client, prompt="a kite", seed=3, num_images=2)
    assert result["selection"]["value_id"] is None
    assert [image["value_id"] for image in result["images"]] == [None, None]


def test_select_decides_a_batch_of_prompts(client):
    response = client.post("/v1/select", json={"prompts": ["a zombie house", "a ball", "a nurse", "a teal nurse"]})
    assert response.status_code == 200, response.text
    selections = response.json()["selections"]
    assert [s["value_id"] for s in selections] == ["no_zombie", None, "colour_equality", None]
    assert selections[3]["stage"] == "explicit-attribute"
    assert [s["value_ids"] for s in selections] == [["no_zombie"], [], ["colour_equality"], []]
    assert all(len(s["reasons"]) == len(s["value_ids"]) for s in selections)
    # A harmful prompt with a person gets both values, harm first; its images apply the first.
    both = client.post("/v1/select", json={"prompts": ["a zombie nurse"]}).json()["selections"][0]
    assert both["value_ids"] == ["no_zombie", "colour_equality"] and both["value_id"] == "no_zombie"


def test_values_lists_the_registry(client):
    values = client.get("/v1/values").json()
    assert values["max_values_per_prompt"] == 1
    assert values["bias_probability"] == 0.5  # the page tells it, not a fixed "½"
    assert {v["id"]: v["kind"] for v in values["values"]} == {
        "colour_equality": "bias",
        "no_blood": "harm",
        "no_zombie": "harm",
    }


# --- same images as LiVOPipeline ---------------------------------------------------------------


def _reference(pipeline, result, prompt, seed, num_images):
    import torch

    from livo.models import ValueChoice

    selection = result["selection"]
    choice = ValueChoice(selection["value_id"], selection["text"], selection["kind"]) if selection["value_id"] else None
    output = pipeline(
        prompt,
        num_images_per_prompt=num_images,
        generator=torch.Generator().manual_seed(seed),
        selector=lambda _: choice,
        num_inference_steps=STEPS,
        guidance_scale=result["guidance"],
        output_type="np",
    )
    pixels = np.round(np.asarray(output.images) * 255).astype(np.uint8)
    return pixels, [selection["value_id"] if v is not None else None for v in output.values]


@pytest.mark.parametrize(
    ("prompt", "seed", "num_images", "value"),
    [
        ("a bloody nurse", 11, 2, "auto"),  # harm value on every image
        ("a doctor", 5, 4, "auto"),  # bias value: per-image coins must match too
        ("a bloody nurse", 11, 2, "none"),  # the untouched base model
    ],
)
def test_images_equal_livo_pipeline_for_the_same_seed(client, reference_pipeline, prompt, seed, num_images, value):
    result = _generate(client, prompt=prompt, seed=seed, num_images=num_images, value=value)
    expected, applied = _reference(reference_pipeline, result, prompt, seed, num_images)
    assert [image["value_id"] for image in result["images"]] == applied
    np.testing.assert_array_equal(_pixels(result), expected)


def test_concurrent_requests_are_batched_and_still_match_livo_pipeline(client, reference_pipeline):
    requests = [("a bloody teacher", 21, 1), ("a hero", 22, 2), ("a zombie bowl", 23, 1), ("a box", 24, 2)]
    with ThreadPoolExecutor(len(requests)) as pool:
        results = list(pool.map(lambda r: _generate(client, prompt=r[0], seed=r[1], num_images=r[2]), requests))
    assert max(r["timings"]["batch_requests"] for r in results) >= 2
    for (prompt, seed, num_images), result in zip(requests, results):
        expected, applied = _reference(reference_pipeline, result, prompt, seed, num_images)
        assert [image["value_id"] for image in result["images"]] == applied
        assert np.abs(_pixels(result).astype(int) - expected.astype(int)).max() <= 1


def test_metrics_count_requests_and_images_by_value(client):
    before = scrape(client)
    _generate(client, prompt="a zombie tree", seed=1)
    assert client.post("/v1/generate", json={"prompt": "a ball", "steps": MAX_STEPS + 1}).status_code == 422
    after = scrape(client)
    grew = {key: after[key] - before.get(key, 0.0) for key in after if after[key] != before.get(key, 0.0)}
    assert grew[("livo_serve_requests_total", (("endpoint", "generate"), ("status", "200")))] == 1
    assert grew[("livo_serve_requests_total", (("endpoint", "generate"), ("status", "422")))] == 1
    assert grew[("livo_serve_images_total", (("value", "no_zombie"),))] == 1
    assert grew[("livo_serve_selections_total", (("stage", "keyword"),))] == 1
    assert grew[("livo_serve_request_seconds_count", (("endpoint", "generate"),))] == 2
    # The census: this service's one replica, alive on this machine's node, none lost.
    assert after[("livo_serve_replicas", (("deployment", "Service"), ("node", "127.0.0.1")))] == 1
    assert not [key for key in after if key[0] == "livo_serve_replicas_lost_total"]


def test_metrics_count_every_answer_by_status_401_and_validation_422_included(client, anonymous):
    before = scrape(client)
    assert anonymous.get("/v1/values").status_code == 401
    assert anonymous.post("/v1/generate", json={"prompt": "a ball"}).status_code == 401
    assert client.post("/v1/generate", json={"steps": 3}).status_code == 422  # FastAPI's own: prompt missing
    assert client.post("/v1/select", json={"prompts": "not a list"}).status_code == 422
    assert anonymous.get("/healthz").status_code == 200
    assert anonymous.get("/no/such/path").status_code == 404
    after = scrape(client)
    grew = {key: after[key] - before.get(key, 0.0) for key in after if after[key] != before.get(key, 0.0)}

    def count(endpoint, status):
        return grew.get(("livo_serve_requests_total", (("endpoint", endpoint), ("status", str(status)))), 0)

    assert count("values", 401) == 1 and count("generate", 401) == 1
    assert count("generate", 422) == 1 and count("select", 422) == 1
    assert count("healthz", 200) == 1 and count("other", 404) == 1
    assert count("metrics", 200) == 1  # the first scrape


# --- under load --------------------------------------------------------------------------------


def _replica_rss_mb() -> float:
    import psutil

    total = 0
    for process in psutil.process_iter(["cmdline", "memory_info"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if "ServeReplica:livo:" in cmdline and process.info["memory_info"] is not None:
            total += process.info["memory_info"].rss
    return total / 2**20


def test_saturated_service_answers_overload_promptly_and_keeps_its_memory(service):
    import httpx

    clients, seconds = 32, 20.0
    prompts = ["a bloody doctor", "a ball", "a nurse", "a zombie kite", "a teal hero", "a house"]
    records: list[tuple[int, float]] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker(index: int) -> None:
        with httpx.Client(base_url=service, timeout=60, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
            k = 0
            while time.monotonic() < deadline:
                start = time.monotonic()
                response = c.post(
                    "/v1/generate", json={"prompt": prompts[(index + k) % len(prompts)], "seed": k, "steps": 1}
                )
                with lock:
                    records.append((response.status_code, time.monotonic() - start))
                if response.status_code in (429, 503):
                    time.sleep(0.05)
                k += 1

    rss = [_replica_rss_mb()]
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        time.sleep(2.0)
        rss.append(_replica_rss_mb())
    statuses = [status for status, _ in records]
    assert set(statuses) <= {200, 429, 503}, sorted(set(statuses))
    assert statuses.count(200) >= 10
    overload = [latency for status, latency in records if status in (429, 503)]
    assert overload, "32 clients should saturate one replica with 8 + 4 places"
    assert np.percentile(overload, 95) < 1.0  # refused at once, not after queueing
    # Memory is stable: the second half of the run grows by less than 64 MB over the first half.
    half = len(rss) // 2
    assert max(rss[half:]) - max(rss[1:half]) < 64, rss
    assert _generate(
        httpx.Client(base_url=service, timeout=60, headers={"Authorization": f"Bearer {TOKEN}"}),
        prompt="a ball",
        seed=0,
    )["images"]


# --- the web page ------------------------------------------------------------------------------


def test_the_page_loads_nothing_from_other_origins(anonymous):
    import re

    for path in ("/", "/static/app.js", "/static/style.css"):
        response = anonymous.get(path)
        assert response.status_code == 200
        assert not re.search(r"https?://", response.text), path
    assert "default-src 'self'" in anonymous.get("/").headers["content-security-policy"]


def test_web_page_shows_base_and_aligned_images_with_the_selected_value(service, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(service + "/")
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.ID, "prompt").send_keys("a bloody doctor")
    browser.find_element(By.ID, "steps").send_keys(str(STEPS))
    num_images = browser.find_element(By.ID, "num-images")
    num_images.clear()
    num_images.send_keys("2")
    browser.find_element(By.ID, "generate").click()

    def both_rows_loaded(driver):
        rows = [driver.find_elements(By.CSS_SELECTOR, f"#{row} img") for row in ("base-images", "aligned-images")]
        return all(len(images) == 2 for images in rows) and all(
            driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", image)
            for images in rows
            for image in images
        )

    WebDriverWait(browser, 60).until(both_rows_loaded)
    assert "no_blood" in browser.find_element(By.ID, "selection-text").text
    assert "keyword" in browser.find_element(By.ID, "selection-text").text
    captions = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#aligned-images figcaption")]
    assert captions == ["value: no_blood", "value: no_blood"]
    assert [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#base-images figcaption")] == ["base model"] * 2
    # A bias value's line gives the service's bias_probability (GET /v1/values).
    assert browser.execute_script("return biasProbability") == 0.5  # loaded with the values
    browser.execute_script("biasProbability = 0.75")
    line = browser.execute_script(
        "return describeSelection({kind: 'bias', value_id: 'colour_equality', text: 'people of every colour', "
        "stage: 'retrieval', score: null}, 'auto', [])"
    )
    assert "applied to each image with probability 0.75." in line, line
