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

from livo.dataset.judging import bias_targets, record_drop_reason
from livo.dataset.rewrite import PromptRewriter, load_rewriter
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
    """Kept pair rows (``livo.pair/2`` columns plus ``aligned_class``/``violating_class``), drops as
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
        """Violating images, judging, rewriting, aligned images, judging, pair decisions. A record
        with several values is judged under each of them, on the same two images."""
        started = time.perf_counter()
        result = BatchResult(batch=batch)
        registry = self.spec.registry
        values = [[registry.value(v) for v in (r.get("value_ids") or (r["value_id"],))] for r in records]
        prompts = [r["prompt"] for r in records]
        violating = self.images(prompts, [r["seed"] for r in records])
        result.images += len(records)
        verdicts = self._verdicts(violating, prompts, values)
        survivors: list[tuple[int, str, list[str | None]]] = []  # (index, aligned prompt, class per value)
        for i, record in enumerate(records):
            targets, aligned, reason = self._aligned_prompt(record, values[i], verdicts[i])
            if reason is not None:
                result.dropped.append((record["record_id"], values[i][0].id, reason))
            else:
                survivors.append((i, aligned, targets))
        if survivors:
            aligned_images = self.images([a for _, a, _ in survivors], [records[i]["seed"] for i, _, _ in survivors])
            result.images += len(survivors)
            originals = [prompts[i] for i, _, _ in survivors]
            aligned_verdicts = self._verdicts(aligned_images, originals, [values[i] for i, _, _ in survivors])
            firsts = [values[i][0].id for i, _, _ in survivors]
            subjects = self.judges.subjects(aligned_images, originals, firsts, [v[0] for v in aligned_verdicts])
            for k, (i, aligned, targets) in enumerate(survivors):
                record = records[i]
                reason = record_drop_reason(values[i], verdicts[i], aligned_verdicts[k], targets, subjects[k])
                if reason is not None:
                    result.dropped.append((record["record_id"], values[i][0].id, reason))
                    continue
                result.kept.append(
                    self._row(
                        record,
                        values[i],
                        aligned,
                        targets,
                        violating[i],
                        aligned_images[k],
                        verdicts[i],
                        aligned_verdicts[k],
                    )
                )
        self.batches_done += 1
        result.seconds = time.perf_counter() - started
        return result

    def _verdicts(
        self, images: np.ndarray, prompts: Sequence[str], values: Sequence[Sequence[ValuePrinciple]]
    ) -> list[list[ImageVerdict]]:
        """Each image's verdict under each of its values (position j: the j-th value of every record
        that has one; images of one value are judged together)."""
        out: list[list[ImageVerdict]] = [[] for _ in images]
        for position in range(max((len(v) for v in values), default=0)):
            rows = [i for i, vs in enumerate(values) if len(vs) > position]
            found = self.judges.judge_by_value(
                images[rows], [prompts[i] for i in rows], [values[i][position].id for i in rows]
            )
            for i, verdict in zip(rows, found):
                out[i].append(verdict)
        return out

    def _aligned_prompt(
        self, record: dict[str, Any], values: Sequence[ValuePrinciple], verdicts: Sequence[ImageVerdict]
    ) -> tuple[list[str | None], str, str | None]:
        """(class per value, aligned prompt, drop reason) once the violating image is judged: the
        planned harm rewrite, then for each bias value the class the violating image does not show
        inserted. Dropped when a bias value's class is unreadable, or when no value is violated."""
        targets = bias_targets(values, verdicts, record["record_id"])
        if targets is None:
            return [], "", "violating_attribute_unreadable"
        aligned = record.get("aligned_prompt") or record["prompt"]
        for value, target in zip(values, targets):
            if target is not None:
                aligned = self.rewriter.rewrite(aligned, value, target)
        contrasted = any(target is not None for target in targets)
        if not contrasted and not any(verdict.harmful for verdict in verdicts):
            return targets, "", "violating_not_harmful"
        if not contrasted and not record.get("aligned_prompt"):
            for value in values:
                aligned = self.rewriter.rewrite(aligned, value, None)
        return targets, aligned, None

    def _row(
        self,
        record: dict[str, Any],
        values: Sequence[ValuePrinciple],
        aligned_prompt: str,
        targets: Sequence[str | None],
        violating: np.ndarray,
        aligned: np.ndarray,
        violating_verdicts: Sequence[ImageVerdict],
        aligned_verdicts: Sequence[ImageVerdict],
    ) -> dict[str, Any]:
        bias = next((j for j, value in enumerate(values) if value.kind == "bias"), 0)
        return {
            "record_id": record["record_id"],
            "cluster_id": int(record["cluster_id"]),
            "prompt": record["prompt"],
            "aligned_prompt": aligned_prompt,
            "value_id": values[0].id,
            "value_text": values[0].text,
            "value_ids": [value.id for value in values],
            "value_texts": [value.text for value in values],
            "category": "+".join(category_of(value) for value in values),
            "seed": int(record["seed"]),
            "aligned_image": png_bytes(aligned),
            "violating_image": png_bytes(violating),
            "judge_scores": [
                {
                    "judge": self.judges.name_for(value.id),
                    "aligned": aligned_verdicts[j].score,
                    "violating": violating_verdicts[j].score,
                }
                for j, value in enumerate(values)
            ],
            "model_id": self.spec.model_label or self.spec.model,
            "created_by": self.spec.created_by,
            "run_id": self.spec.run_id,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            # Of the first bias value (a record of two bias values asks the others' classes in its prompt).
            "aligned_class": targets[bias],
            "violating_class": violating_verdicts[bias].attribute,
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
