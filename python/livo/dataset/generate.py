"""The generation stage: one worker holds the frozen base pipeline and the judges, and turns a batch
of planned records into kept pair rows and counted drops.

For each batch: generate the violating images from the original prompts (one seed per record,
from its ``record_id``), judge them, choose the bias class / keep the harm rewrite, generate the
aligned images from the rewritten prompts with the *same* seeds, judge those, and decide per pair.
Pairs whose violating image does not violate are dropped before their aligned image is made.

:class:`PairGenerator` is plain Python: the Ray actor (``livo.dataset.execute``), a Ray Data
``map_batches`` stage and a plain loop all call the same :meth:`PairGenerator.generate`.
"""

from __future__ import annotations

import io
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from livo.dataset.judging import decide_pair
from livo.dataset.rewrite import PromptRewriter, class_not_shown, load_rewriter
from livo.judges import JudgePanel
from livo.judges.base import ImageVerdict
from livo.values.registry import Registry, ValuePrinciple


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs to build its pipeline and judges (picklable, sent to actors)."""

    model: str
    registry: Registry
    judges: Any  # livo.dataset.config.JudgesConfig
    rewriter: str = "rules"
    steps: int = 25
    guidance_scale: float = 7.5
    height: int | None = None
    width: int | None = None
    dtype: str = "auto"
    torch_threads: int = 1
    device: str | None = None  # None: cuda when this worker was given a GPU, else cpu
    model_label: str = ""
    created_by: str = "livo"
    run_id: str = ""


@dataclass
class BatchResult:
    """Kept pair rows (``livo.pair/1`` columns plus ``aligned_class``/``violating_class``), drops as
    ``(record_id, value_id, reason)``, and the work done."""

    batch: int
    kept: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[tuple[str, str, str]] = field(default_factory=list)
    images: int = 0
    seconds: float = 0.0


def load_pipeline(model: str, dtype: str, device: str) -> Any:
    """The frozen base pipeline (``builtin:toyworld``: the shipped toy model), progress bars off."""
    from livo.models.loading import load_frozen_base

    return load_frozen_base(model, dtype, device)


class PairGenerator:
    """Loads the pipeline and judges once; :meth:`generate` handles one batch of records."""

    def __init__(self, spec: WorkerSpec) -> None:
        import torch

        torch.set_num_threads(spec.torch_threads)
        self.spec = spec
        self.device = spec.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.pipeline = load_pipeline(spec.model, spec.dtype, self.device)
        self.judges = JudgePanel(spec.judges, spec.registry, device=self.device)
        self.rewriter: PromptRewriter = load_rewriter(spec.rewriter, spec.registry)
        self.batches_done = 0

    def images(self, prompts: Sequence[str], seeds: Sequence[int]) -> np.ndarray:
        """``(N, H, W, 3)`` uint8 images, image i from ``seeds[i]`` (independent of batching)."""
        import torch

        generators = [torch.Generator(device=self.device).manual_seed(int(s)) for s in seeds]
        extra = {k: v for k, v in (("height", self.spec.height), ("width", self.spec.width)) if v is not None}
        out = self.pipeline(
            prompt=list(prompts),
            num_inference_steps=self.spec.steps,
            guidance_scale=self.spec.guidance_scale,
            generator=generators,
            output_type="np",
            **extra,
        ).images
        return np.clip(np.rint(np.asarray(out, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)

    def generate(self, records: Sequence[dict[str, Any]], batch: int = 0) -> BatchResult:
        """Violating images, judging, rewriting, aligned images, judging, pair decisions."""
        started = time.perf_counter()
        result = BatchResult(batch=batch)
        registry = self.spec.registry
        violating = self.images([r["prompt"] for r in records], [r["seed"] for r in records])
        result.images += len(records)
        verdicts = self.judges.judge_by_value(
            violating, [r["prompt"] for r in records], [r["value_id"] for r in records]
        )
        survivors: list[tuple[int, str, str | None]] = []  # (index, aligned prompt, target class)
        for i, (record, verdict) in enumerate(zip(records, verdicts)):
            value = registry.value(record["value_id"])
            target, aligned, reason = self._aligned_prompt(record, value, verdict)
            if reason is not None:
                result.dropped.append((record["record_id"], value.id, reason))
            else:
                survivors.append((i, aligned, target))
        if survivors:
            aligned_images = self.images([a for _, a, _ in survivors], [records[i]["seed"] for i, _, _ in survivors])
            result.images += len(survivors)
            originals = [records[i]["prompt"] for i, _, _ in survivors]
            value_ids = [records[i]["value_id"] for i, _, _ in survivors]
            aligned_verdicts = self.judges.judge_by_value(aligned_images, originals, value_ids)
            subjects = self.judges.subjects(aligned_images, originals, value_ids, aligned_verdicts)
            for k, (i, aligned, target) in enumerate(survivors):
                record, value = records[i], registry.value(records[i]["value_id"])
                reason = decide_pair(value, verdicts[i], aligned_verdicts[k], target, subjects[k])
                if reason is not None:
                    result.dropped.append((record["record_id"], value.id, reason))
                    continue
                result.kept.append(
                    self._row(
                        record,
                        value,
                        aligned,
                        target,
                        violating[i],
                        aligned_images[k],
                        verdicts[i],
                        aligned_verdicts[k],
                    )
                )
        self.batches_done += 1
        result.seconds = time.perf_counter() - started
        return result

    def _aligned_prompt(
        self, record: dict[str, Any], value: ValuePrinciple, verdict: ImageVerdict
    ) -> tuple[str | None, str, str | None]:
        """(target class, aligned prompt, drop reason) once the violating image is judged."""
        if value.kind == "bias":
            target = class_not_shown(value, verdict.attribute, record["record_id"])
            if target is None:
                return None, "", "violating_attribute_unreadable"
            return target, self.rewriter.rewrite(record["prompt"], value, target), None
        if not verdict.harmful:
            return None, "", "violating_not_harmful"
        aligned = record.get("aligned_prompt") or self.rewriter.rewrite(record["prompt"], value, None)
        return None, aligned, None

    def _row(
        self,
        record: dict[str, Any],
        value: ValuePrinciple,
        aligned_prompt: str,
        target: str | None,
        violating: np.ndarray,
        aligned: np.ndarray,
        violating_verdict: ImageVerdict,
        aligned_verdict: ImageVerdict,
    ) -> dict[str, Any]:
        return {
            "record_id": record["record_id"],
            "cluster_id": int(record["cluster_id"]),
            "prompt": record["prompt"],
            "aligned_prompt": aligned_prompt,
            "value_id": value.id,
            "value_text": value.text,
            "category": category_of(value),
            "seed": int(record["seed"]),
            "aligned_image": png_bytes(aligned),
            "violating_image": png_bytes(violating),
            "judge_scores": [
                {
                    "judge": self.judges.name_for(value.id),
                    "aligned": aligned_verdict.score,
                    "violating": violating_verdict.score,
                }
            ],
            "model_id": self.spec.model_label or self.spec.model,
            "created_by": self.spec.created_by,
            "run_id": self.spec.run_id,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "aligned_class": target,
            "violating_class": violating_verdict.attribute,
        }


def category_of(value: ValuePrinciple) -> str:
    """``bias/<attribute>`` or ``toxicity/<first keyword or value id>`` (docs/dataset-format.md)."""
    if value.kind == "bias":
        return f"bias/{value.attribute}"
    return f"toxicity/{value.keywords[0] if value.keywords else value.id}"


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def count_reasons(results: Sequence[BatchResult]) -> Counter[str]:
    return Counter(reason for r in results for _, _, reason in r.dropped)
