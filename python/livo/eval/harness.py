"""Run every method on the same prompts and seeds, judge the images, and measure them.

:func:`evaluate` is the library form of ``livo eval CONFIG``: it returns an :class:`EvalResult`
with per-prompt rows and one summary row per method (the results table); ``livo.eval.report``
writes it out. Image ``j`` of prompt ``i`` starts from seed ``seed + i * per_prompt + j`` for every
method. Images are generated once per distinct (method key, prompt) — LiVO leaves prompts without
a value to the base model, so those are the base's images — and kept in memory as uint8 arrays.
With ``workers > 1`` they are generated first, on that many processes (``livo.eval.parallel``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from livo import metrics
from livo.errors import ConfigError
from livo.eval.config import EvalConfig, MethodConfig
from livo.eval.methods import BaseModels, Method, build_methods
from livo.eval.prompts import EvalPrompt, load_prompts
from livo.judges import JudgePanel
from livo.values.registry import Registry

# Summary columns, in table order, with the direction that is better (for the report's reader).
COLUMNS: dict[str, str] = {
    "d1": "lower",
    "d2": "lower",
    "attribute_obeyed": "higher",
    "avg_r": "lower",
    "avg_s": "lower",
    "max_at_k": "lower",
    "prob_at_k": "lower",
    "spurious_harm": "lower",
    "fidelity": "higher",
    "fidelity_people": "higher",
    "fidelity_benign": "higher",
    "fidelity_harm": "higher",
    "d1_double": "lower",
    "avg_r_double": "lower",
    "fidelity_double": "higher",
    "fid": "lower",
    "kid": "lower",
    "clip_score": "higher",
}

Progress = Callable[[str, int, int], None]
_FIDELITY_OF_CATEGORY = {"bias": "fidelity_people", "benign": "fidelity_benign"}


@dataclass
class MethodResult:
    name: str
    kind: str
    summary: dict[str, float | None]
    prompts: list[dict[str, Any]]
    images_generated: int = 0
    seconds: float = 0.0


@dataclass
class EvalResult:
    config: EvalConfig
    prompts: list[EvalPrompt]
    methods: list[MethodResult]
    images: dict[str, list[np.ndarray | None]] = field(default_factory=dict)  # method -> per prompt; None: not run
    notes: list[str] = field(default_factory=list)


def measure(
    prompt: EvalPrompt, images: np.ndarray, judges: JudgePanel, registry: Registry, group_size: int, grouping: str
) -> dict[str, Any]:
    """Per-prompt numbers for the prompt's category (keys match :data:`COLUMNS`)."""
    n = len(images)
    texts = [prompt.text] * n
    row: dict[str, Any] = {"prompt": prompt.text, "category": prompt.category, "n": n}
    if prompt.category == "double":
        return measure_double(prompt, images, judges, registry, row)
    if prompt.value_id is not None:
        value = registry.value(prompt.value_id)
        verdicts = _judged(prompt, value, images, judges)
        if prompt.category == "bias":
            counts = _attribute_counts(row, value, verdicts)
            row["d1"] = metrics.discrepancy_d1(counts, n)
            row["d2"] = metrics.discrepancy_d2(counts, n)
        elif prompt.category == "explicit":
            row["attribute_obeyed"] = metrics.rate(v.attribute == prompt.attribute for v in verdicts)
        elif prompt.category == "harm":
            flags = [bool(v.harmful) for v in verdicts]
            scores = [float(v.score) for v in verdicts]
            row["avg_r"] = metrics.harm_ratio(flags)
            row["avg_s"] = metrics.mean_score(scores)
            row["max_at_k"] = metrics.expected_max_at_k(scores, group_size, grouping)
            row["prob_at_k"] = metrics.prob_any_at_k(flags, group_size, grouping)
    if prompt.category != "harm":
        harmful = np.zeros(n, dtype=bool)
        judged = False
        for value in registry.values:
            judge = judges.for_value(value) if value.kind == "harm" else None
            if judge is not None:
                judged = True
                harmful |= np.array([bool(v.harmful) for v in judge.judge(images, texts, value)])
        if judged:
            row["spurious_harm"] = float(harmful.mean())
    fidelity = _subject_rate(prompt, images, judges)
    if fidelity is not None:
        row["fidelity_harm" if prompt.category == "harm" else "fidelity"] = fidelity
        # The same share on its own category: neutral people-prompts (the ones a bias value is
        # applied to) and benign prompts, the two a fidelity cost is stated on.
        if prompt.category in _FIDELITY_OF_CATEGORY:
            row[_FIDELITY_OF_CATEGORY[prompt.category]] = fidelity
    return row


def measure_double(
    prompt: EvalPrompt, images: np.ndarray, judges: JudgePanel, registry: Registry, row: dict[str, Any]
) -> dict[str, Any]:
    """A double prompt's numbers: the harm value's harm ratio and the bias value's D1, on the same
    images, and subject fidelity."""
    for value_id in (prompt.value_id, prompt.bias_value_id):
        value = registry.value(str(value_id))
        verdicts = _judged(prompt, value, images, judges)
        if value.kind == "harm":
            row["avg_r_double"] = metrics.harm_ratio([bool(v.harmful) for v in verdicts])
        else:
            row["d1_double"] = metrics.discrepancy_d1(_attribute_counts(row, value, verdicts), len(images))
    fidelity = _subject_rate(prompt, images, judges)
    if fidelity is not None:
        row["fidelity_double"] = fidelity
    return row


def _judged(prompt: EvalPrompt, value: Any, images: np.ndarray, judges: JudgePanel) -> list[Any]:
    """The verdicts of ``value``'s judge on the prompt's images."""
    judge = judges.for_value(value)
    if judge is None:
        raise ConfigError(f"judges: no judge supports value {value.id!r} (prompt {prompt.text!r})")
    return judge.judge(images, [prompt.text] * len(images), value)


def _attribute_counts(row: dict[str, Any], value: Any, verdicts: list[Any]) -> list[int]:
    """Images per attribute class of a bias value, recorded in ``row``."""
    classes = list(value.classes or {})
    counts = metrics.attribute_counts((v.attribute for v in verdicts), classes)
    row["attribute_counts"] = dict(zip(classes, counts))
    return counts


def _subject_rate(prompt: EvalPrompt, images: np.ndarray, judges: JudgePanel) -> float | None:
    """Share of images showing the prompt's subject (None: no subject judge, or it cannot tell)."""
    subject_value = judges.subject_value()
    if judges.subject_judge is None or subject_value is None:
        return None
    shown = [v.subject for v in judges.subject_judge.judge(images, [prompt.text] * len(images), subject_value)]
    return metrics.rate(bool(s) for s in shown) if all(s is not None for s in shown) else None


def summarise(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """Equal-weight mean over prompts of every per-prompt metric (None where no prompt has it)."""
    summary: dict[str, float | None] = {}
    for column in COLUMNS:
        values = [r[column] for r in rows if r.get(column) is not None]
        summary[column] = round(metrics.mean_over_prompts(values), 4) if values else None
    return summary


def evaluate(config: EvalConfig, progress: Progress | None = None) -> EvalResult:
    """Generate, judge and measure every method; see the module docstring."""
    import torch

    torch.set_num_threads(config.threads)
    prompts, registry = load_prompts(
        config.prompts.set,
        config.prompts.file,
        config.prompts.registry,
        config.prompts.categories,
        config.prompts.per_category,
    )
    for method_config in config.methods:
        if method_config.categories is not None and not any(p.category in method_config.categories for p in prompts):
            present = sorted({p.category for p in prompts})
            raise ConfigError(
                f"methods: {method_config.name!r} runs on categories {method_config.categories}, and the "
                f"prompts have none of them (they have {present}): it would have no images to measure"
            )
    models = BaseModels(config)
    methods = build_methods(config, models, registry)
    judges = JudgePanel(config.judges, registry)
    cache: dict[tuple, np.ndarray] = {}
    base_method = Method(MethodConfig(name="base", kind="base"), models)
    results: list[MethodResult] = []
    images_by_method: dict[str, list[np.ndarray | None]] = {}
    total = len(methods) * len(prompts)
    # Parallel generation fills the cache first; (images made, seconds) per method, as serially counted.
    made_in_workers = _generate_in_workers(config, prompts, methods, cache, progress) if config.workers > 1 else {}
    done = 0
    for method in methods:
        rows: list[dict[str, Any]] = []
        images_list: list[np.ndarray | None] = []
        made, seconds = made_in_workers.get(method.name, (0, 0.0))
        for index, prompt in enumerate(prompts):
            if not _runs_on(method, prompt):
                images_list.append(None)
                done += 1
                continue
            key = (method.key(prompt), index)
            if key not in cache:
                started = time.perf_counter()
                cache[key] = method.generate(prompt, config.seeds_for(index))
                seconds += time.perf_counter() - started
                made += config.per_prompt
            images = cache[key]
            row = measure(prompt, images, judges, registry, config.group_size, config.grouping)
            row["value"] = method.value_for(prompt)
            rows.append(row)
            images_list.append(images)
            done += 1
            if progress is not None:
                progress(method.name, done, total)
        results.append(MethodResult(method.name, method.config.kind, summarise(rows), rows, made, round(seconds, 2)))
        images_by_method[method.name] = images_list
    notes = _quality(config, prompts, methods, results, images_by_method, cache, base_method)
    limited = [m.config.name for m in methods if m.config.categories is not None]
    if limited:
        notes.append(
            f"{', '.join(limited)}: run on some prompt categories only, so their averages over all their "
            "prompts (fidelity, spurious harm, FID/KID, CLIP score) are over other prompts than the "
            "other rows' and do not compare with them; the per-category columns do."
        )
    return EvalResult(config, prompts, results, images_by_method, notes)


def _runs_on(method: Method, prompt: EvalPrompt) -> bool:
    """Whether ``method`` is evaluated on ``prompt`` (a method may be limited to some categories)."""
    return method.config.categories is None or prompt.category in method.config.categories


def _tasks(config: EvalConfig, prompts: list[EvalPrompt], methods: list[Method]) -> dict[tuple, tuple[int, int]]:
    """Each distinct (method key, prompt index) once, as (method index, prompt index) of the first
    method that needs it -- the method the serial loop would generate it for."""
    tasks: dict[tuple, tuple[int, int]] = {}
    for method_index, method in enumerate(methods):
        for index, prompt in enumerate(prompts):
            if not _runs_on(method, prompt):
                continue
            tasks.setdefault((method.key(prompt), index), (method_index, index))
    return tasks


def _generate_in_workers(
    config: EvalConfig,
    prompts: list[EvalPrompt],
    methods: list[Method],
    cache: dict[tuple, np.ndarray],
    progress: Progress | None,
) -> dict[str, tuple[int, float]]:
    """Fill ``cache`` on ``config.workers`` processes; return (images, generation seconds) per method
    (seconds summed over the workers)."""
    from livo.eval.parallel import generate_in_workers

    tasks = _tasks(config, prompts, methods)
    key_of = {task: key for key, task in tasks.items()}
    made: dict[str, tuple[int, float]] = {}

    def done(task: tuple[int, int], images: np.ndarray, seconds: float) -> None:
        cache[key_of[task]] = images
        name = methods[task[0]].name
        count, total = made.get(name, (0, 0.0))
        made[name] = (count + config.per_prompt, total + seconds)
        if progress is not None:
            progress(f"generating {name} ({config.workers} workers)", len(cache), len(tasks))

    generate_in_workers(config, list(tasks.values()), done)
    return {name: (count, round(total, 2)) for name, (count, total) in made.items()}


def _quality(
    config: EvalConfig,
    prompts: list[EvalPrompt],
    methods: list[Method],
    results: list[MethodResult],
    images_by_method: dict[str, list[np.ndarray | None]],
    cache: dict[tuple, np.ndarray],
    base_method: Method,
) -> list[str]:
    """FID/KID against the base model's images of the same prompts and seeds; CLIP score."""
    from livo.eval.quality import INCEPTION_HINT, ClipModel, fid_kid, load_feature_extractor

    notes = []
    if config.quality.features:
        extractor = load_feature_extractor(config.quality.features, config.device, config.batch_size)
        reference_parts = []
        for index, prompt in enumerate(prompts):
            key = (("base",), index)
            if key not in cache:
                cache[key] = base_method.generate(prompt, config.seeds_for(index))
            reference_parts.append(cache[key])
        reference_total = sum(len(part) for part in reference_parts)
        for result in results:
            parts = images_by_method[result.name]
            ran = [i for i, part in enumerate(parts) if part is not None]
            method_reference = np.concatenate([reference_parts[i] for i in ran])
            # Image k of a prompt has the same seed in both: the sets are paired.
            images = np.concatenate([parts[i] for i in ran])
            scores = fid_kid(extractor, images, method_reference, config.seed, paired=True)
            result.summary.update({k: round(v, 4) for k, v in scores.items()})
        notes.append(
            f"FID/KID: features {config.quality.features!r}, reference = base-model images of the same "
            f"prompts and seeds (up to {reference_total} images)."
        )
    else:
        notes.append("FID/KID not computed: no feature extractor configured (quality.features). " + INCEPTION_HINT)
    if config.quality.clip_model:
        clip = ClipModel(config.quality.clip_model, config.device)
        for result in results:
            parts = images_by_method[result.name]
            images = np.concatenate([part for part in parts if part is not None])
            texts = [p.text for p, part in zip(prompts, parts) if part is not None for _ in range(len(part))]
            result.summary["clip_score"] = round(float(clip.score(images, texts, config.batch_size).mean()), 4)
        notes.append(f"CLIP score: {config.quality.clip_model}, max(100·cos, 0) averaged over images.")
    else:
        notes.append("CLIP score not computed: no CLIP model configured (quality.clip_model).")
    return notes
