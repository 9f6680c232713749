"""Bearer-token auth for the API, and the loopback-only rule of ``--insecure``.

The replicas hold only the token's SHA-256 and compare digests in constant time, so the token itself
is never part of the deployment's config (which Ray shows in its dashboard and logs).
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import HTTPException

from livo.runtime import is_loopback
from livo.serve.config import AuthConfig, token_digest


class BearerAuth:
    """Checks ``Authorization: Bearer <token>``; in insecure mode, checks that the client is local."""

    def __init__(self, config: AuthConfig) -> None:
        if not config.insecure and not config.token_sha256:
            raise ValueError("auth: a token digest is required unless insecure")
        self.insecure = config.insecure
        self._digest = config.token_sha256 or ""

    def check(self, headers: Any, client_host: str | None) -> None:
        """Raise 401 (missing or wrong token) or 403 (insecure mode, non-loopback client)."""
        if self.insecure:
            if client_host is not None and not is_loopback(client_host):
                raise HTTPException(
                    403, "this service runs without auth (--insecure) and answers loopback clients only"
                )
            return
        header = headers.get("authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HTTPException(
                401,
                "missing bearer token: send 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(token_digest(token.strip()), self._digest):
            raise HTTPException(
                401, "invalid bearer token", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
            )
