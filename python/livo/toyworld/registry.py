"""The toy world's value registry (``registry.yaml`` beside this module): the ``livo.registries``
plug-in ``toyworld``, so every stage reads it as ``registry: toyworld`` like any built-in registry."""

from __future__ import annotations

from pathlib import Path

REGISTRY_FILE = Path(__file__).resolve().parent / "registry.yaml"


def registry_path() -> Path:
    return REGISTRY_FILE
