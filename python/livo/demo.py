"""``livo demo``: the whole pipeline on the toy world (placeholder until the stages land)."""

from __future__ import annotations

from typing import Any


def register_demo(subparsers: Any) -> None:
    pass
