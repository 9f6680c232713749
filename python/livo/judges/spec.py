"""Which judge decides what: the judge specs of build and evaluation configs.

A spec's ``kind`` names a ``livo.judges`` plug-in (``livo.plugins``): ``clip``, ``nudenet`` and
``vlm`` ship with this package, the toy world's ``toyworld`` with the toy world, and any installed
package can add its own.
"""

from __future__ import annotations

import json

from pydantic import Field, field_validator, model_validator

from livo.config import StrictModel
from livo.plugins import JUDGES, has_plugin, plugin_names

NEEDS_MODEL = ("clip", "vlm")


class JudgeSpec(StrictModel):
    """One judge: ``kind`` (``clip``: CLIP zero-shot attribute/harm classifier, ``model`` a CLIP hub id
    or folder; ``nudenet``: NudeNet's ONNX nudity detector; ``vlm``: yes/no questions to a local
    vision-language model folder, ``model``; ``toyworld``: the toy world's detectors; or a plug-in's
    kind), ``threshold``, for ``clip`` its ``subject_threshold`` and ``class_template``, and for
    ``clip`` and ``vlm`` ``harm_texts`` (per harm value id, ``[harmful text, safe text]``; a vlm
    judge asks about the first)."""

    kind: str
    model: str | None = None
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    subject_threshold: float | None = None
    class_template: str | None = None
    harm_texts: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("kind")
    @classmethod
    def _installed(cls, kind: str) -> str:
        if not has_plugin(JUDGES, kind):
            raise ValueError(f"unknown judge kind {kind!r} (known: {', '.join(plugin_names(JUDGES))})")
        return kind

    @model_validator(mode="after")
    def _options_fit_the_kind(self) -> JudgeSpec:
        if self.kind in NEEDS_MODEL and not self.model:
            raise ValueError(f"a {self.kind} judge needs 'model' (a hub id or local folder)")
        if self.kind != "clip" and self.class_template:
            raise ValueError("'class_template' is for clip judges only")
        if self.kind not in ("clip", "vlm") and self.harm_texts:
            raise ValueError("'harm_texts' is for clip and vlm judges only")
        if self.kind in ("nudenet", "vlm") and self.subject_threshold is not None:
            raise ValueError(f"'subject_threshold' is for clip judges only; a {self.kind} judge does not read it")
        return self

    def key(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)


class JudgesConfig(StrictModel):
    """Which judge decides each value (``values`` by value id, else ``default``) and which one says
    whether an image shows its prompt's subject (``subject``; null: not checked). The defaults are the
    toy world's detectors, the embedded world every command runs on out of the box."""

    default: JudgeSpec = Field(default_factory=lambda: JudgeSpec(kind="toyworld"))
    values: dict[str, JudgeSpec] = Field(default_factory=dict)
    subject: JudgeSpec | None = Field(default_factory=lambda: JudgeSpec(kind="toyworld"))

    def spec_for(self, value_id: str) -> JudgeSpec:
        return self.values.get(value_id, self.default)
