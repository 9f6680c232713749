"""Image judges behind one interface (:class:`ImageJudge`), shared by dataset construction (which
pairs to keep) and evaluation (how often images show an attribute or a harm).

* :class:`ToyWorldJudge` — the toy world's exact detectors (light: numpy only);
* :class:`ClipJudge` — CLIP zero-shot attribute classes and harm (``livo.judges.clip``);
* :class:`NudeNetJudge` — NudeNet's ONNX nudity detector (``livo.judges.nudenet``).

:func:`make_judge` builds one from a kind and options, importing heavy libraries only then.
"""

from __future__ import annotations

from typing import Any

from livo.errors import ConfigError
from livo.judges.base import ImageJudge, ImageVerdict
from livo.judges.toyworld import ToyWorldJudge

JUDGE_KINDS = ("toyworld", "clip", "nudenet")


def make_judge(kind: str, *, model: str | None = None, threshold: float | None = None,
               device: str | None = None, **options: Any) -> ImageJudge:
    """A judge of ``kind`` (``toyworld``, ``clip`` with ``model``, ``nudenet``)."""
    if kind == "toyworld":
        return ToyWorldJudge()
    if kind == "clip":
        from livo.judges.clip import ClipJudge

        if not model:
            raise ConfigError("clip judge: 'model' (a CLIP hub id or folder) is required")
        return ClipJudge(model, threshold=threshold, device=device, **options)
    if kind == "nudenet":
        from livo.judges.nudenet import NudeNetJudge

        return NudeNetJudge(threshold=threshold)
    raise ConfigError(f"unknown judge kind {kind!r} (known: {', '.join(JUDGE_KINDS)})")


__all__ = ["JUDGE_KINDS", "ImageJudge", "ImageVerdict", "ToyWorldJudge", "make_judge"]
