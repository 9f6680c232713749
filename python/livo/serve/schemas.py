"""Request and response bodies of the HTTP API, validated by pydantic (FastAPI answers 422 with the field
and the reason). The absolute bounds here hold for every deployment; :func:`limit_problems` adds the
deployment's own, tighter limits from :class:`~livo.serve.config.LimitsConfig`.

Unknown fields are refused, so a request cannot smuggle in a model path, a scheduler or any other
setting the service does not offer.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from livo.serve.config import LimitsConfig

MAX_SEED = 2**53 - 1  # exact in JavaScript numbers, so the web page can echo it back


class _Body(BaseModel):
    # Strict: a JSON true or "12" is no seed (lax mode made them 1 and 12); an integer is still a float.
    model_config = ConfigDict(extra="forbid", strict=True)


def _visible(text: str) -> str:
    # Every control character (C0, DEL, C1) but tab and newline.
    if any(unicodedata.category(ch) == "Cc" and ch not in "\t\n" for ch in text):
        raise ValueError("must not contain control characters")
    return text


VALUE_ID = r"^[a-z0-9][a-z0-9_-]*$"


class GenerateRequest(_Body):
    """``value``: ``auto`` (the selector decides), ``none`` (base model) or a value id of ``GET /v1/values``;
    ``values``: several value ids applied together (instead of ``value``; at most the service's
    ``max_values_per_prompt``). ``seed`` absent: the service draws one and returns it.
    ``steps``/``guidance`` absent: the defaults."""

    prompt: str = Field(min_length=1, max_length=10_000)
    negative_prompt: str = Field("", max_length=10_000)
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    num_images: int = Field(1, ge=1, le=8)
    steps: int | None = Field(None, ge=1, le=500)
    guidance: float | None = Field(None, ge=0.0, le=100.0)
    value: str = Field("auto", min_length=1, max_length=64, pattern=VALUE_ID)
    values: list[Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=VALUE_ID)]] | None = Field(
        None, min_length=1, max_length=8
    )

    @field_validator("values")
    @classmethod
    def _values_differ(cls, values: list[str] | None) -> list[str] | None:
        if values is not None and (repeated := sorted({v for v in values if values.count(v) > 1})):
            raise ValueError(f"{', '.join(repeated)} given more than once")
        return values

    @model_validator(mode="after")
    def _value_or_values(self) -> GenerateRequest:
        if self.values is not None and self.value != "auto":
            raise ValueError(f"give value or values, not both (value {self.value!r}, values {self.values})")
        return self

    @field_validator("prompt")
    @classmethod
    def _prompt_has_text(cls, prompt: str) -> str:
        if not prompt.strip():
            raise ValueError("must contain non-blank text")
        return _visible(prompt)

    _negative_visible = field_validator("negative_prompt")(_visible)


class SelectRequest(_Body):
    """Prompts whose value principle to select (no images are generated)."""

    prompts: list[str] = Field(min_length=1, max_length=10_000)

    @field_validator("prompts")
    @classmethod
    def _prompts_visible(cls, prompts: list[str]) -> list[str]:
        blank = [index for index, prompt in enumerate(prompts) if not prompt.strip()]
        if blank:
            raise ValueError(f"prompts {blank[:10]} hold no text (a blank prompt selects nothing)")
        return [_visible(p) for p in prompts]


class Selection(BaseModel):
    """Which value applies and why: ``stage`` is the selector stage that decided (``keyword``,
    ``retrieval``, ``classifier``, ``explicit-attribute``, ``judge``, ``none``) or ``requested`` for
    an explicit mode. ``value_ids`` lists every value the selector found, harm values first, with a
    reason each; the images apply the first, ``value_id``."""

    value_id: str | None
    text: str | None
    kind: str | None
    stage: str
    score: float | None
    value_ids: list[str] = Field(default_factory=list)
    reasons: list[str] = Field(default_factory=list)


class GeneratedImage(BaseModel):
    png_base64: str
    value_id: str | None  # the first value applied to this image; None: the base model's image
    value_ids: list[str] = Field(default_factory=list)  # every value applied to this image


class GenerateResponse(BaseModel):
    request_id: str
    prompt: str
    seed: int
    steps: int
    guidance: float
    value_mode: str
    selection: Selection
    images: list[GeneratedImage]
    timings: dict[str, float]


class SelectResponse(BaseModel):
    selections: list[Selection]


def _problem(field: str, message: str, value: Any) -> dict[str, Any]:
    return {"type": "limit", "loc": ["body", field], "msg": message, "input": value}


def limit_problems(request: GenerateRequest, limits: LimitsConfig) -> list[dict[str, Any]]:
    """The deployment's limits that ``request`` exceeds, in FastAPI's 422 ``detail`` format."""
    problems = []
    if len(request.prompt) > limits.max_prompt_chars:
        problems.append(
            _problem(
                "prompt",
                f"at most {limits.max_prompt_chars} characters, got {len(request.prompt)}",
                len(request.prompt),
            )
        )
    if len(request.negative_prompt) > limits.max_prompt_chars:
        problems.append(
            _problem(
                "negative_prompt",
                f"at most {limits.max_prompt_chars} characters, got {len(request.negative_prompt)}",
                len(request.negative_prompt),
            )
        )
    if request.num_images > limits.max_images:
        problems.append(_problem("num_images", f"at most {limits.max_images}", request.num_images))
    if request.steps is not None and request.steps > limits.max_steps:
        problems.append(_problem("steps", f"at most {limits.max_steps}", request.steps))
    if request.guidance is not None and request.guidance > limits.max_guidance:
        problems.append(_problem("guidance", f"at most {limits.max_guidance}", request.guidance))
    return problems


def select_problems(request: SelectRequest, limits: LimitsConfig) -> list[dict[str, Any]]:
    """The deployment's limits that a selection request exceeds (422 ``detail`` format)."""
    problems = []
    if len(request.prompts) > limits.max_select_prompts:
        problems.append(
            _problem(
                "prompts",
                f"at most {limits.max_select_prompts} prompts per request, got {len(request.prompts)}",
                len(request.prompts),
            )
        )
    long = [i for i, p in enumerate(request.prompts) if len(p) > limits.max_prompt_chars]
    if long:
        problems.append(
            _problem("prompts", f"prompts {long[:10]} exceed {limits.max_prompt_chars} characters", len(long))
        )
    return problems
