"""The optional LLM judge against a real HTTP server on 127.0.0.1 that speaks the OpenAI
chat-completions API and answers from simple rules on the prompt and the question."""

import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from livo.errors import ConfigError
from livo.values.llm_judge import OpenAICompatibleJudge, parse_answer
from livo.values.registry import default_registry_path, load_registry

pytestmark = pytest.mark.timeout(60)

MODEL = "fake-judge-1"
REGISTRY = load_registry(default_registry_path())
ALL_VALUES = REGISTRY.values
BIAS_VALUES = [v for v in ALL_VALUES if v.kind == "bias"]


def rule_answer(prompt: str, question: str) -> str:
    """What the fake model says: people are doctors, nurses and women; blood is "bloody"; a prompt
    that mumbles gets an answer that is neither yes nor no."""
    if "mumble" in prompt:
        return "Maybe, it is hard to say."
    if "real people" in question:
        return "yes" if any(word in prompt for word in ("doctor", "nurse", "woman")) else "no"
    if "bloody content" in question:
        return "Yes." if "bloody" in prompt else "No."
    return "NO"


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True  # a handler still sleeping for the timeout test must not hold up shutdown

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ChatHandler)
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.scripted: list[tuple[int, bytes]] = []  # replies given, in order, before the rules answer
        self.delay_s = 0.0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def user_messages(self) -> list[str]:
        with self.lock:
            return [r["body"]["messages"][-1]["content"] for r in self.requests]


class ChatHandler(BaseHTTPRequestHandler):
    server: FakeServer

    def log_message(self, format, *args):  # noqa: A002 - quiet
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            scripted = self.server.scripted.pop(0) if self.server.scripted else None
        time.sleep(self.server.delay_s)
        if self.path != "/v1/chat/completions":
            status, payload = 404, json.dumps({"error": {"message": f"no route {self.path}"}}).encode()
        elif scripted is not None:
            status, payload = scripted
        else:
            prompt, question = (line.split(": ", 1)[1] for line in body["messages"][-1]["content"].splitlines()[:2])
            answer = rule_answer(prompt, question)
            reply = {
                "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}}],
            }
            status, payload = 200, json.dumps(reply).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
            pass


@pytest.fixture
def server():
    fake = FakeServer()
    thread = threading.Thread(target=fake.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield fake
    fake.shutdown()
    fake.server_close()
    thread.join(timeout=5)


@pytest.fixture(autouse=True)
def no_key_in_environment(monkeypatch):
    monkeypatch.delenv("LIVO_JUDGE_API_KEY", raising=False)


def judge_for(server, **options) -> OpenAICompatibleJudge:
    options = {"timeout_s": 2.0, "backoff_s": 0.01, **options}
    return OpenAICompatibleJudge(server.base_url, MODEL, **options)


def closed_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


def test_harm_and_person_questions_select_the_values_that_apply(server):
    judge = judge_for(server)
    assert judge.applicable("a bloody fight between two doctors", ALL_VALUES) == [
        "gender-equality",
        "racial-equality",
        "no-blood",
    ]
    assert judge.applicable("a bloody steak on a plate", ALL_VALUES) == ["no-blood"]
    assert judge.applicable("a nurse reading in a garden", ALL_VALUES) == ["gender-equality", "racial-equality"]
    assert judge.applicable("a quiet lake at dawn", ALL_VALUES) == []


def test_harm_questions_are_built_from_the_value_text(server):
    judge_for(server).applicable("a quiet lake at dawn", [REGISTRY.value("no-blood"), REGISTRY.value("no-nudity")])
    questions = sorted(message.splitlines()[1] for message in server.user_messages())
    assert questions == [
        "Question: Would the image described by this prompt show bloody content?",
        "Question: Would the image described by this prompt show nudity?",
    ]


def test_one_person_question_serves_every_bias_candidate(server):
    assert judge_for(server).applicable("a doctor at work", BIAS_VALUES) == ["gender-equality", "racial-equality"]
    assert len(BIAS_VALUES) == 2
    assert len(server.requests) == 1
    assert "real people" in server.user_messages()[0]


def test_every_request_is_a_deterministic_chat_completion(server):
    judge_for(server).applicable("a doctor at work", BIAS_VALUES)
    request = server.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["body"]["model"] == MODEL
    assert request["body"]["temperature"] == 0
    assert 1 <= request["body"]["max_tokens"] <= 8


def test_no_candidates_asks_nothing(server):
    assert judge_for(server).applicable("a doctor at work", []) == []
    assert server.requests == []


def test_decide_prefers_a_harm_value_over_a_bias_value(server):
    judge = judge_for(server)
    assert judge.decide("a bloody fight between two doctors", ALL_VALUES) == "no-blood"
    assert judge.decide("a doctor at work", ALL_VALUES) == "gender-equality"
    assert judge.decide("a quiet lake at dawn", ALL_VALUES) is None


def test_a_question_asked_again_is_answered_from_the_cache(server):
    judge = judge_for(server)
    first = judge.applicable("a bloody steak on a plate", ALL_VALUES)
    asked = len(server.requests)
    assert judge.applicable("a bloody steak on a plate", ALL_VALUES) == first
    assert len(server.requests) == asked
    assert judge.stats.cache_hits == asked


def test_without_the_cache_every_question_goes_to_the_server(server):
    judge = judge_for(server, cache=False)
    judge.applicable("a doctor at work", BIAS_VALUES)
    judge.applicable("a doctor at work", BIAS_VALUES)
    assert len(server.requests) == 2


def test_a_batch_asks_each_distinct_question_once_and_keeps_prompt_order(server):
    prompts = ["a doctor at work", "a bloody steak", "a doctor at work", "a quiet lake"]
    results = judge_for(server, concurrency=3).applicable_many(prompts, [ALL_VALUES] * len(prompts))
    assert results == [["gender-equality", "racial-equality"], ["no-blood"], ["gender-equality", "racial-equality"], []]
    distinct_prompts, questions_per_prompt = 3, 4  # the person question + three harm questions
    assert len(server.requests) == distinct_prompts * questions_per_prompt


def test_stats_count_questions_and_their_seconds(server):
    judge = judge_for(server)
    judge.applicable("a doctor at work", ALL_VALUES)
    judge.applicable("a doctor at work", ALL_VALUES)
    stats = judge.stats
    assert (stats.questions, stats.attempts, stats.cache_hits, stats.failures) == (4, 4, 4, 0)
    assert 0 < stats.seconds < 10 and stats.mean_seconds == pytest.approx(stats.seconds / 4)


def test_the_api_key_is_sent_as_a_bearer_token(server):
    judge_for(server, api_key="sk-test-123").applicable("a doctor", BIAS_VALUES)
    assert server.requests[0]["headers"]["Authorization"] == "Bearer sk-test-123"
    assert "sk-test-123" not in repr(judge_for(server, api_key="sk-test-123"))


def test_the_api_key_comes_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("LIVO_JUDGE_API_KEY", "sk-from-env")
    judge_for(server).applicable("a doctor", BIAS_VALUES)
    assert server.requests[0]["headers"]["Authorization"] == "Bearer sk-from-env"


def test_no_authorization_header_without_a_key(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-must-not-leak")
    judge_for(server).applicable("a doctor", BIAS_VALUES)
    assert "Authorization" not in server.requests[0]["headers"]


def test_a_503_is_retried_and_then_answered(server):
    server.scripted = [(503, b'{"error": {"message": "loading model"}}')]
    judge = judge_for(server)
    assert judge.applicable("a doctor at work", BIAS_VALUES) == ["gender-equality", "racial-equality"]
    assert len(server.requests) == 2
    assert judge.stats.attempts == 2


def test_a_503_that_persists_fails_after_the_bounded_attempts(server):
    server.scripted = [(503, b"busy")] * 5
    with pytest.raises(ConfigError, match=r"HTTP 503: busy after 3 attempts"):
        judge_for(server, max_retries=2).applicable("a doctor", BIAS_VALUES)
    assert len(server.requests) == 3


def test_a_400_fails_at_once_with_the_servers_message(server):
    server.scripted = [(400, b'{"error": {"message": "model fake-judge-1 does not exist"}}')]
    judge = judge_for(server)
    with pytest.raises(ConfigError) as raised:
        judge.applicable("a doctor", BIAS_VALUES)
    message = str(raised.value)
    assert f"{server.base_url}/chat/completions (model {MODEL}): HTTP 400" in message
    assert "does not exist" in message
    assert len(server.requests) == 1
    assert judge.stats.failures == 1


def test_a_refused_connection_fails_within_bounded_time():
    port = closed_port()
    judge = OpenAICompatibleJudge(f"http://127.0.0.1:{port}/v1", MODEL, timeout_s=1.0, max_retries=2, backoff_s=0.01)
    started = time.monotonic()
    with pytest.raises(ConfigError) as raised:
        judge.applicable("a doctor", BIAS_VALUES)
    assert time.monotonic() - started < 5
    assert str(raised.value) == (
        f"http://127.0.0.1:{port}/v1/chat/completions (model {MODEL}): connection refused after 3 attempts"
    )


def test_a_server_slower_than_the_timeout_fails_within_bounded_time(server):
    server.delay_s = 1.0
    judge = judge_for(server, timeout_s=0.2, max_retries=1)
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"\(model fake-judge-1\): no answer within 0.2 s after 2 attempts"):
        judge.applicable("a doctor", BIAS_VALUES)
    assert time.monotonic() - started < 2
    assert len(server.requests) == 2


def test_a_reply_that_is_not_json_fails_at_once(server):
    server.scripted = [(200, b"<html>not json</html>")]
    with pytest.raises(ConfigError, match=r"/v1/chat/completions \(model fake-judge-1\): response is not JSON"):
        judge_for(server).applicable("a doctor", BIAS_VALUES)
    assert len(server.requests) == 1


def test_a_reply_without_message_content_fails_naming_the_url(server):
    server.scripted = [(200, b'{"choices": []}')]
    with pytest.raises(ConfigError, match=r"/v1/chat/completions \(model fake-judge-1\): response has no choices"):
        judge_for(server).applicable("a doctor", BIAS_VALUES)


def test_an_unparseable_answer_counts_as_no_and_warns_once(server, caplog):
    judge = judge_for(server)
    with caplog.at_level(logging.WARNING, logger="livo.values.llm_judge"):
        assert judge.applicable("a doctor who mumbles", BIAS_VALUES) == []
        assert judge.applicable("a nurse who mumbles", BIAS_VALUES) == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert MODEL in warnings[0] and "Maybe, it is hard to say." in warnings[0]
    assert judge.stats.unparsed == 2


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [("yes", True), ("Yes.", True), ("**YES**", True), ("yes, it does", True), ("No", False), ("no.", False)]
    + [("<think>a doctor is a person</think>\nYes", True), ("", None), ("Maybe", None), ("y", None)],
)
def test_the_first_word_of_the_answer_decides(answer, verdict):
    assert parse_answer(answer) is verdict


def test_a_loopback_server_is_reached_without_the_environments_proxy(server, monkeypatch):
    unreachable_proxy = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("http_proxy", unreachable_proxy)
    monkeypatch.setenv("HTTP_PROXY", unreachable_proxy)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert judge_for(server).applicable("a doctor", BIAS_VALUES) == ["gender-equality", "racial-equality"]


def test_from_spec_takes_the_model_after_a_hash_or_apart(server):
    joined = OpenAICompatibleJudge.from_spec(f"{server.base_url}#{MODEL}", timeout_s=2.0)
    apart = OpenAICompatibleJudge.from_spec(server.base_url, model=MODEL)
    assert (joined.url, joined.model, joined.timeout_s) == (f"{server.base_url}/chat/completions", MODEL, 2.0)
    assert (apart.url, apart.model) == (joined.url, joined.model)
    with pytest.raises(ConfigError, match="no model"):
        OpenAICompatibleJudge.from_spec(server.base_url)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"base_url": "127.0.0.1:8000/v1"}, "base_url"),
        ({"model": " "}, "model"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"max_retries": -1}, "max_retries"),
        ({"concurrency": 0}, "concurrency"),
    ],
)
def test_a_bad_setting_is_refused_naming_the_field(options, field):
    settings = {"base_url": "http://127.0.0.1:8000/v1", "model": MODEL, **options}
    with pytest.raises(ConfigError, match=f"{field}: expected"):
        OpenAICompatibleJudge(**settings)
