"""The request-body limit, whatever the transfer encoding.

A limit checked against ``Content-Length`` alone lets a chunked body (``Transfer-Encoding:
chunked``, no length) through at any size. :class:`BodyLimit` is a plain ASGI middleware: a declared
length over the limit is answered 413 before anything is read, and the bytes that actually arrive
are counted as the application reads them, so reading stops at the first chunk past the limit and
the request is answered 413 too. The limit is read per request from ``app.state.max_body_bytes``
(set by the replica from its config).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_MAX_BODY_BYTES = 65_536


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once the body passes the limit. An ``HTTPException``, so that FastAPI's
    body parsing passes it on (it turns other errors into 400) and the app answers it as a 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")


class BodyLimit:
    """ASGI middleware answering 413 for a request body over ``app.state.max_body_bytes``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = _limit(scope)
        declared = _declared_length(scope)
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _answer_too_large(send, limit)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except BodyTooLarge:
            if started:  # the app answered before reading everything; nothing more can be said
                raise
            await _answer_too_large(send, limit)


def _limit(scope: Scope) -> int:
    app: Any = scope.get("app")
    state = getattr(app, "state", None)
    return int(getattr(state, "max_body_bytes", DEFAULT_MAX_BODY_BYTES))


def _declared_length(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return value.decode("latin-1").strip()
    return None


async def _answer_too_large(send: Send, limit: int) -> None:
    body = json.dumps({"detail": f"request body larger than {limit} bytes"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
