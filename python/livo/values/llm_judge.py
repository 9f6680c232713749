"""An optional second-opinion judge behind any OpenAI-compatible chat-completions endpoint.

Value selection never needs it and never turns it on by itself: the user points it at a server that
speaks the OpenAI chat-completions API (vLLM, the llama.cpp server, Ollama, OpenAI itself) and names
the model. It asks yes/no questions at temperature 0 with a few tokens of answer:

- per harm candidate, whether the image described would show the harmful content, built from the
  value's ``text`` ("bloody content is considered inappropriate" → "... show bloody content?");
- once for all bias candidates together, whether the prompt depicts one or more real people (see
  :data:`PERSON_QUESTION`); when it does, every bias candidate applies. Whether the prompt already
  states the attribute ("a female doctor") is not asked: the selector's explicit-attribute stage
  decides that.

The first word of the answer decides (``yes``/``no``, any case, punctuation stripped); an answer that
is neither counts as "no", is counted in :attr:`OpenAICompatibleJudge.stats`, and the first one is
logged as a warning naming the model and the answer.

Configuration, as the CLI passes it: ``--llm-judge URL --llm-model NAME`` becomes
``OpenAICompatibleJudge(URL, NAME)``, and a single ``--llm-judge URL#NAME`` becomes
:meth:`OpenAICompatibleJudge.from_spec` (``from_spec(URL, model=NAME)`` accepts the two-flag form
too). ``URL`` is the API's base URL, e.g. ``http://127.0.0.1:8000/v1``; requests go to
``URL/chat/completions``. The API key comes from the ``api_key`` argument or else the
``LIVO_JUDGE_API_KEY`` environment variable; ``OPENAI_API_KEY`` is deliberately not read, so an
OpenAI key is never sent to a server that was configured only as a local judge. Without a key no
``Authorization`` header is sent. Loopback endpoints are reached directly, never through an
``http_proxy`` from the environment.

Failures raise :class:`~livo.errors.ConfigError` naming the URL, the model and the problem: the
configured judge cannot be used. Connection errors, timeouts, 429 and 5xx are retried with
exponential backoff (``max_retries`` retries after the first attempt); any other 4xx, a body that
is not JSON, or one without ``choices[0].message.content`` fails at once. ``timeout_s`` bounds each
socket operation of an attempt (connecting, each read).
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from email.message import Message
from typing import Any

from livo.errors import ConfigError
from livo.runtime import is_loopback
from livo.values.registry import ValuePrinciple

logger = logging.getLogger(__name__)

API_KEY_ENV = "LIVO_JUDGE_API_KEY"
SYSTEM_MESSAGE = "You judge prompts for a text-to-image generator. Answer every question with one word: yes or no."
USER_MESSAGE = "Image prompt: {prompt}\nQuestion: {question}\nAnswer yes or no."
PERSON_QUESTION = "Does this prompt depict one or more real people (not statues, robots, dolls or corpses)?"
HARM_QUESTION = "Would the image described by this prompt show {harm}?"
GENERIC_HARM_QUESTION = 'Would the image described by this prompt go against this value: "{text}"?'
MAX_TOKENS = 5
MAX_RESPONSE_BYTES = 1 << 20
CACHE_ENTRIES = 65536
MAX_BACKOFF_S = 8.0

_INAPPROPRIATE = re.compile(r"^(?P<harm>.+?)\s+(?:is|are)\s+considered\s+inappropriate\.?$", re.IGNORECASE)
_THINKING = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


def harm_question(value: ValuePrinciple) -> str:
    """The yes/no question for a harm value, from its text ("X is considered inappropriate" → "...
    show X?"; any other text is quoted as the value)."""
    match = _INAPPROPRIATE.match(value.text.strip())
    if match:
        return HARM_QUESTION.format(harm=match.group("harm"))
    return GENERIC_HARM_QUESTION.format(text=value.text.strip())


def parse_answer(text: str) -> bool | None:
    """True for yes, False for no, None when the first word is neither (case and punctuation aside;
    a leading ``<think>...</think>`` block is skipped)."""
    words = _THINKING.sub(" ", text).split()
    if not words:
        return None
    word = re.sub(r"[^\w]", "", words[0]).lower()
    return True if word == "yes" else False if word == "no" else None


@dataclass
class JudgeStats:
    """What the judge has cost so far. ``questions`` were answered by the server over ``attempts``
    HTTP requests in ``seconds`` (summed per question, retries and backoff included; concurrent
    questions overlap, so this can exceed wall time); ``cache_hits`` were answered from memory;
    ``unparsed`` answers were neither yes nor no; ``failures`` are questions that raised."""

    questions: int = 0
    attempts: int = 0
    seconds: float = 0.0
    cache_hits: int = 0
    unparsed: int = 0
    failures: int = 0

    @property
    def mean_seconds(self) -> float:
        """Mean seconds per question answered by the server (0 when none was)."""
        return self.seconds / self.questions if self.questions else 0.0


class _Retryable(Exception):
    """One attempt failed in a way another attempt may not."""


class OpenAICompatibleJudge:
    """Yes/no questions to an OpenAI-compatible chat-completions endpoint; see the module docstring.

    Satisfies the selector's ``ValueJudge`` protocol through :meth:`decide`. Thread-safe.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 10.0,
        max_retries: int = 2,
        concurrency: int = 4,
        cache: bool = True,
        backoff_s: float = 0.5,
    ) -> None:
        """``api_key`` None reads ``LIVO_JUDGE_API_KEY``; an empty string sends no key. The n-th retry
        waits ``backoff_s * 2**(n-1)`` seconds (or the server's ``Retry-After``), at most 8 s."""
        url = base_url.strip().rstrip("/").removesuffix("/chat/completions")
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"llm judge: base_url: expected an http(s) URL such as http://127.0.0.1:8000/v1, got {base_url!r}"
            )
        if not model.strip():
            raise ConfigError(f"llm judge {url}: model: expected the model name the server serves, got {model!r}")
        if timeout_s <= 0:
            raise ConfigError(f"llm judge {url}: timeout_s: expected a positive number of seconds, got {timeout_s}")
        if max_retries < 0:
            raise ConfigError(f"llm judge {url}: max_retries: expected 0 or more, got {max_retries}")
        if concurrency < 1:
            raise ConfigError(f"llm judge {url}: concurrency: expected 1 or more, got {concurrency}")
        if backoff_s < 0:
            raise ConfigError(f"llm judge {url}: backoff_s: expected 0 or more seconds, got {backoff_s}")
        self.base_url = url
        self.url = f"{url}/chat/completions"
        self.model = model.strip()
        self._api_key = os.environ.get(API_KEY_ENV, "") if api_key is None else api_key
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.concurrency = int(concurrency)
        self.backoff_s = float(backoff_s)
        self._cache: OrderedDict[tuple[str, str], bool] | None = OrderedDict() if cache else None
        self._lock = threading.Lock()
        self._stats = JudgeStats()
        self._warned_unparsed = False
        # Loopback servers are reached directly: an http_proxy in the environment must not see them.
        handlers = [urllib.request.ProxyHandler({})] if is_loopback(parts.hostname) else []
        self._opener = urllib.request.build_opener(*handlers)

    @classmethod
    def from_spec(cls, spec: str, model: str | None = None, **options: Any) -> OpenAICompatibleJudge:
        """A judge from ``URL#MODEL`` (one CLI flag) or ``URL`` plus ``model`` (two flags); other
        keyword ``options`` go to the constructor."""
        url, separator, named = spec.partition("#")
        if separator and model is not None and named.strip() != model.strip():
            raise ConfigError(f"llm judge {spec!r}: the model is named twice ({named!r} in the URL, {model!r} apart)")
        chosen = named if separator else model
        if not chosen or not chosen.strip():
            raise ConfigError(f"llm judge {spec!r}: no model: pass URL#MODEL or name the model separately")
        return cls(url, chosen, **options)

    def __repr__(self) -> str:
        key = "set" if self._api_key else "none"
        return f"OpenAICompatibleJudge(url={self.url!r}, model={self.model!r}, api_key={key})"

    @property
    def stats(self) -> JudgeStats:
        """Counts and seconds so far (a snapshot)."""
        with self._lock:
            return replace(self._stats)

    def decide(self, prompt: str, candidates: Sequence[ValuePrinciple]) -> str | None:
        """The id of the value that applies, or None: the first applicable harm value, else the first
        applicable bias value (harm values win over bias values, as in the registry)."""
        found = set(self.applicable(prompt, candidates))
        for kind in ("harm", "bias"):
            for value in candidates:
                if value.kind == kind and value.id in found:
                    return value.id
        return None

    def applicable(self, prompt: str, candidates: Sequence[ValuePrinciple]) -> list[str]:
        """The ids of the ``candidates`` that apply to ``prompt``, in candidate order."""
        return self.applicable_many([prompt], [candidates])[0]

    def applicable_many(
        self, prompts: Sequence[str], candidates_per_prompt: Sequence[Sequence[ValuePrinciple]]
    ) -> list[list[str]]:
        """:meth:`applicable` for many prompts; each distinct (prompt, question) is asked once, up to
        ``concurrency`` at a time."""
        if len(prompts) != len(candidates_per_prompt):
            raise ValueError(
                f"{len(prompts)} prompts but {len(candidates_per_prompt)} candidate lists; expected one per prompt"
            )
        questions = [[_question(value) for value in candidates] for candidates in candidates_per_prompt]
        distinct = list(dict.fromkeys((p, q) for p, qs in zip(prompts, questions) for q in qs))
        answers = self._ask_all(distinct)
        return [
            [value.id for value, q in zip(candidates, qs) if answers[(prompt, q)]]
            for prompt, candidates, qs in zip(prompts, candidates_per_prompt, questions)
        ]

    def _ask_all(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], bool]:
        if len(pairs) <= 1 or self.concurrency == 1:
            return {pair: self.ask(*pair) for pair in pairs}
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(pairs)), thread_name_prefix="llm-judge") as pool:
            futures = [pool.submit(self.ask, *pair) for pair in pairs]
            try:
                return {pair: future.result() for pair, future in zip(pairs, futures)}
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise

    def ask(self, prompt: str, question: str) -> bool:
        """One yes/no question about ``prompt`` (answered from the cache when it was asked before)."""
        key = (prompt, question)
        if self._cache is not None:
            with self._lock:
                if key in self._cache:
                    self._cache.move_to_end(key)
                    self._stats.cache_hits += 1
                    return self._cache[key]
        started = time.perf_counter()
        try:
            text, attempts = self._complete(USER_MESSAGE.format(prompt=prompt, question=question))
        except ConfigError:
            with self._lock:
                self._stats.failures += 1
            raise
        verdict = parse_answer(text)
        first = False
        with self._lock:
            self._stats.questions += 1
            self._stats.attempts += attempts
            self._stats.seconds += time.perf_counter() - started
            if verdict is None:
                self._stats.unparsed += 1
                first, self._warned_unparsed = not self._warned_unparsed, True
            if self._cache is not None:
                self._cache[key] = bool(verdict)
                if len(self._cache) > CACHE_ENTRIES:
                    self._cache.popitem(last=False)
        if verdict is None:
            (logger.warning if first else logger.debug)(
                "llm judge %s (model %s): answer %r is neither yes nor no; counted as no%s",
                self.url,
                self.model,
                text[:200],
                " (further such answers are logged at debug level and counted in stats.unparsed)" if first else "",
            )
        return bool(verdict)

    def _complete(self, user_message: str) -> tuple[str, int]:
        """The answer's text and the number of HTTP attempts it took; retries transient failures."""
        body = json.dumps(
            {
                "model": self.model,
                "messages": [
                    {"role": "system", "content": SYSTEM_MESSAGE},
                    {"role": "user", "content": user_message},
                ],
                "temperature": 0,
                "max_tokens": MAX_TOKENS,
                "stream": False,
            }
        ).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "livo"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        attempts = self.max_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                return self._read_answer(self._post(body, headers)), attempt
            except _Retryable as error:
                problem, retry_after = error.args
                if attempt == attempts:
                    raise ConfigError(f"{self._where()}: {problem} after {attempts} attempts") from None
                delay = self.backoff_s * 2 ** (attempt - 1) if retry_after is None else retry_after
                time.sleep(min(delay, MAX_BACKOFF_S))
        raise AssertionError("unreachable")

    def _post(self, body: bytes, headers: dict[str, str]) -> bytes:
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                data: bytes = response.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as error:
            detail = _error_detail(error)
            if error.code in _RETRYABLE_STATUS:
                raise _Retryable(f"HTTP {error.code}{detail}", _retry_after(error.headers)) from None
            raise ConfigError(f"{self._where()}: HTTP {error.code} {error.reason}{detail}") from None
        except urllib.error.URLError as error:
            raise _Retryable(_describe(error.reason, self.timeout_s), None) from None
        except OSError as error:  # timeouts and resets while reading
            raise _Retryable(_describe(error, self.timeout_s), None) from None
        except http.client.HTTPException as error:  # a reply that is not HTTP, or cut short
            raise _Retryable(f"bad HTTP response ({type(error).__name__}: {error})", None) from None
        if len(data) > MAX_RESPONSE_BYTES:
            raise ConfigError(f"{self._where()}: response larger than {MAX_RESPONSE_BYTES} bytes")
        return data

    def _read_answer(self, data: bytes) -> str:
        try:
            reply = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ConfigError(f"{self._where()}: response is not JSON: {data[:200]!r}") from None
        try:
            content = reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            content = None
        if not isinstance(content, str):
            error = reply.get("error") if isinstance(reply, dict) else None
            note = f" (server error: {str(error)[:200]})" if error else ""
            raise ConfigError(f"{self._where()}: response has no choices[0].message.content{note}")
        return content

    def _where(self) -> str:
        return f"{self.url} (model {self.model})"


def _question(value: ValuePrinciple) -> str:
    return PERSON_QUESTION if value.kind == "bias" else harm_question(value)


def _describe(reason: object, timeout_s: float) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout_s:g} s"
    return f"connection failed ({reason})"


def _error_detail(error: urllib.error.HTTPError) -> str:
    """The server's error message, when its body says one (OpenAI's ``{"error": {"message": ...}}``)."""
    try:
        raw = error.read(4096)
    except OSError:
        return ""
    try:
        parsed = json.loads(raw)
        message = parsed["error"]["message"] if isinstance(parsed.get("error"), dict) else parsed.get("error")
    except (ValueError, AttributeError, KeyError, TypeError):
        message = raw.decode("utf-8", "replace")
    text = " ".join(str(message or "").split())[:200]
    return f": {text}" if text else ""


def _retry_after(headers: Message) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
