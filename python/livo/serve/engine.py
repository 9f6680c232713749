"""The generation engine behind the service: one loaded ``LiVOPipeline`` and ``ValueSelector``, and
batched generation of many requests in one pipeline call. Plain Python (no Ray), so the benchmark and
tests can run it directly; the Serve deployment holds one per replica.

Seed contract: a request ``(prompt, seed, num_images=n, value mode)`` gives the same images as

    LiVOPipeline(...)(prompt, n, generator=torch.Generator(device).manual_seed(seed),
                      selector=<a selector answering the values the request resolved to>,
                      num_inference_steps=..., guidance_scale=...)

whether or not it shared a batch with other requests: requests with the same sampling settings go
to one ``LiVOPipeline.generate_batch`` call, which draws each request's initial noise and bias coins
from its own seeded generator exactly as that call does. (Batched float arithmetic can differ from a
lone call in the last bits; tests bound that difference on the 8-bit images.)
"""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from livo.errors import ConfigError
from livo.serve.config import ModelConfig, ServiceConfig, ValuesConfig

AUTO = "auto"
NONE = "none"


@dataclass(frozen=True)
class GenerationJob:
    """One validated generation request (``value``: ``auto``, ``none`` or a value id; ``values``:
    value ids applied together, instead of ``value``)."""

    prompt: str
    seed: int
    num_images: int = 1
    steps: int = 25
    guidance: float = 5.0
    negative_prompt: str = ""
    value: str = AUTO
    values: tuple[str, ...] = ()


@dataclass
class GenerationResult:
    """PNG bytes, the first value id applied (None: base model) and every value id applied, per
    image; the request's value decision (``selection``: value id, text, kind, stage, score) and
    timings in seconds."""

    images: list[bytes]
    applied: list[str | None]
    selection: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    applied_all: list[list[str]] = field(default_factory=list)


def resolve_device(device: str) -> str:
    """``auto`` is CUDA when available, else CPU."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_pipeline(config: ModelConfig) -> Any:
    """``LiVOPipeline.from_pretrained`` on the configured base (default: the shipped toy model)."""
    import torch

    from livo.models import LiVOPipeline
    from livo.models.loading import resolve_model
    from livo.models.pipeline import VALUE_ENCODER_FOLDER

    base = resolve_model(config.base)
    if (
        config.value_encoder is None
        and os.path.isdir(base)
        and not os.path.isdir(os.path.join(base, VALUE_ENCODER_FOLDER))
    ):
        raise ConfigError(
            f"model.base {base}: has no {VALUE_ENCODER_FOLDER}/ folder; train one or set model.value_encoder"
        )
    dtype = getattr(torch, config.dtype)
    pipeline = LiVOPipeline.from_pretrained(
        base,
        torch_dtype=dtype,
        device=resolve_device(config.device),
        value_encoder_path=config.value_encoder,
        bias_probability=config.bias_probability,
        max_values_per_prompt=config.max_values_per_prompt,
    )
    pipeline.base.set_progress_bar_config(disable=True)
    return pipeline


def selector_from_config(config: ValuesConfig) -> Any:
    """A ``ValueSelector`` from an index folder, or from a registry indexed in memory at start-up."""
    from livo.values import ValueSelector, load_embedder, load_registry
    from livo.values.classifier_training import selector_in_memory
    from livo.values.registry import resolve_registry_path

    if config.index is not None:
        return ValueSelector.load(config.index)
    path = resolve_registry_path(config.registry)
    return selector_in_memory(load_registry(path), load_embedder(config.embedder), registry_source=str(path))


MODEL_THREAD_NAME = "livo-generate"


def name_os_thread(name: str) -> None:
    """Gives the calling thread ``name`` (at most 15 bytes) as the OS sees it (``top -H``, ``/proc``),
    which Python's thread names are not. Linux only; elsewhere nothing happens."""
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/comm", "wb") as comm:
            comm.write(name.encode("utf-8")[:15])
    except OSError:
        pass


def png_bytes(image: Any) -> bytes:
    """A PIL image as PNG bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class GenerationEngine:
    """Loaded model + selector; :meth:`generate` runs a list of jobs as few pipeline calls as possible.

    Thread-safe: Hugging Face fast tokenizers keep their padding/truncation state on a shared object,
    so concurrent calls could tokenise with each other's settings. One lock guards the selector and
    one the pipeline, so a selection never waits for a running U-Net batch."""

    def __init__(self, pipeline: Any, selector: Any) -> None:
        self.pipeline = pipeline
        self.selector = selector
        self.registry = selector.registry
        self._selector_lock = threading.Lock()
        self._pipeline_lock = threading.Lock()

    @classmethod
    def from_config(cls, config: ServiceConfig) -> GenerationEngine:
        return cls(load_pipeline(config.model), selector_from_config(config.values))

    def values(self) -> list[dict[str, Any]]:
        """The value principles requests may name, in registry order."""
        return [{"id": v.id, "text": v.text, "kind": v.kind, "attribute": v.attribute} for v in self.registry.values]

    def select(self, prompts: Sequence[str]) -> list[dict[str, Any]]:
        """The selector's decision per prompt: value id (None: no value), text, kind, stage, score."""
        with self._selector_lock:
            selections = self.selector.select(list(prompts))
        return [self._describe(s.value_id, s.stage, s.score, s.value_ids, s.reasons) for s in selections]

    def _describe(
        self,
        value_id: str | None,
        stage: str,
        score: float | None,
        value_ids: list[str] | None = None,
        reasons: list[str] | None = None,
    ) -> dict[str, Any]:
        value = self.registry.value(value_id) if value_id is not None else None
        return {
            "value_id": value_id,
            "text": value.text if value else None,
            "kind": value.kind if value else None,
            "stage": stage,
            "score": score,
            "value_ids": list(value_ids) if value_ids is not None else ([value_id] if value_id else []),
            "reasons": list(reasons or []),
        }

    def decide(self, jobs: Sequence[GenerationJob]) -> list[dict[str, Any]]:
        """Each job's value decision: the selector's for ``auto`` (one batched call), else the request's."""
        named = {j.value for j in jobs if j.value not in (AUTO, NONE)} | {v for j in jobs for v in j.values}
        if unknown := sorted(named - set(self.registry.ids)):
            raise ConfigError(f"value: unknown value ids {unknown}; known: {self.registry.ids}")
        automatic = [i for i, job in enumerate(jobs) if job.value == AUTO and not job.values]
        selected = dict(zip(automatic, self.select([jobs[i].prompt for i in automatic]), strict=True))
        return [
            selected[i]
            if i in selected
            else self._describe(job.values[0], "requested", None, list(job.values))
            if job.values
            else self._describe(None if job.value == NONE else job.value, "requested", None)
            for i, job in enumerate(jobs)
        ]

    def applied_values(self, decision: dict[str, Any]) -> tuple[Any, ...]:
        """The values a decision applies: up to ``max_values_per_prompt`` of the selector's (all of a
        request's, which the service checked against that limit), as the pipeline's choices."""
        from livo.models import ValueChoice

        first = decision["value_id"]
        ids = [] if first is None else [first, *[v for v in decision["value_ids"] if v != first]]
        if decision["stage"] != "requested":
            ids = ids[: self.max_values]
        choices = []
        for value_id in ids:
            value = self.registry.value(value_id)
            choices.append(ValueChoice(value.id, value.text, value.kind))
        return tuple(choices)

    @property
    def max_values(self) -> int:
        """How many values the pipeline applies per prompt."""
        return int(getattr(self.pipeline, "max_values_per_prompt", 1))

    def generate(self, jobs: Sequence[GenerationJob]) -> list[GenerationResult]:
        """Run ``jobs``; those with equal steps and guidance share one pipeline call."""
        start = time.perf_counter()
        decisions = self.decide(jobs)
        select_s = time.perf_counter() - start
        results: list[GenerationResult | None] = [None] * len(jobs)
        groups: dict[tuple[int, float], list[int]] = {}
        for i, job in enumerate(jobs):
            groups.setdefault((job.steps, job.guidance), []).append(i)
        for (steps, guidance), members in groups.items():
            with self._pipeline_lock:
                group_start = time.perf_counter()
                images, applied = self._generate_group(
                    [jobs[i] for i in members], [decisions[i] for i in members], steps, guidance
                )
                generate_s = time.perf_counter() - group_start
            offset = 0
            for i in members:
                count = jobs[i].num_images
                results[i] = GenerationResult(
                    images=images[offset : offset + count],
                    applied=[ids[0] if ids else None for ids in applied[offset : offset + count]],
                    applied_all=applied[offset : offset + count],
                    selection=decisions[i],
                    timings={
                        "select_s": select_s,
                        "generate_s": generate_s,
                        "batch_images": float(len(images)),
                        "batch_requests": float(len(members)),
                    },
                )
                offset += count
        return [r for r in results if r is not None]

    def _generate_group(
        self, jobs: list[GenerationJob], decisions: list[dict[str, Any]], steps: int, guidance: float
    ) -> tuple[list[bytes], list[list[str]]]:
        """One ``LiVOPipeline.generate_batch`` call for jobs that share sampling settings; per image,
        the ids of every value applied."""
        from livo.models import GenerationRequest

        requests = []
        for job, decision in zip(jobs, decisions, strict=True):
            requests.append(
                GenerationRequest(
                    prompt=job.prompt,
                    seed=job.seed,
                    num_images=job.num_images,
                    negative_prompt=job.negative_prompt,
                    values=self.applied_values(decision),
                )
            )
        outputs = self.pipeline.generate_batch(
            requests, num_inference_steps=steps, guidance_scale=guidance, output_type="pil"
        )
        images = [png_bytes(image) for output in outputs for image in output.images]
        applied = [[value.id for value in values] for output in outputs for values in output.applied]
        return images, applied
