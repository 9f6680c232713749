"""The stages before generation: read prompt sources, normalise + deduplicate (Rust), select a
value per prompt (the FAISS selector) and plan the records (ids, seeds, harm rewrites).

Everything here is cheap next to generation and fully checked: a build whose inputs are wrong
fails here, before any actor starts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from livo.dataset.config import BuildConfig, SourcesConfig
from livo.dataset.records import PlannedRecord, record_id, seed_of
from livo.dataset.rewrite import PromptRewriter
from livo.errors import ConfigError, InputError
from livo.plugins import PROMPT_GENERATORS, load_plugin
from livo.values.registry import Registry


@dataclass
class Plan:
    """Planned records and the counts of every stage before generation."""

    records: list[PlannedRecord]
    stages: dict[str, dict[str, int]] = field(default_factory=dict)
    drops: Counter[str] = field(default_factory=Counter)


def read_sources(config: SourcesConfig) -> tuple[list[str], dict[str, int]]:
    """All prompts of all sources in order, and the number each source gave (with ``skipped_empty``,
    the rows of the files that were null or blank, when there were any). Raises InputError for a
    missing, unreadable or empty file or a missing column, naming the file."""
    from livo.data.io import read_prompt_table

    prompts: list[str] = []
    counts: dict[str, int] = {}
    skipped = 0
    for source in config.files:
        path = Path(source.path)
        if not path.is_file():
            raise InputError(f"sources.files: {path}: no such file")
        if path.stat().st_size == 0:
            raise InputError(f"sources.files: {path}: the file is empty (no prompts)")
        try:
            _, column = read_prompt_table(path, source.column)
        except InputError as error:
            raise InputError(f"sources.files: {error}") from None
        texts = [t for t in column.to_pylist() if t is not None and t.strip()]
        if not texts:
            raise InputError(f"sources.files: {path}: no non-empty prompts in column {source.column or 'prompt'!r}")
        counts[str(path)] = len(texts)
        skipped += len(column) - len(texts)
        prompts += texts
    if skipped:
        counts["skipped_empty"] = skipped
    for name, generator in config.generators.items():
        generated = [str(text) for text in load_plugin(PROMPT_GENERATORS, name)(generator.count, generator.seed)]
        counts[name] = len(generated)
        prompts += generated
    return prompts, counts


def selector_for(config: BuildConfig, registry: Registry) -> Any:
    """A prebuilt index folder, or an index built in memory over the registry with the embedder (and
    the value classifier where LiVO ships labelled prompts for the registry)."""
    from livo.values.classifier_training import selector_in_memory
    from livo.values.embedders import load_embedder
    from livo.values.selector import ValueSelector

    if config.selection.index is not None:
        if not Path(config.selection.index).is_dir():
            raise InputError(f"selection.index: {config.selection.index}: no such index folder")
        return ValueSelector.load(config.selection.index, registry=registry)
    return selector_in_memory(registry, load_embedder(config.selection.embedder))


def check_value_ids(config: BuildConfig, registry: Registry) -> None:
    """Every value id named in the config exists in the registry."""
    named = {
        "selection.values": config.selection.values or [],
        # A key may join several values with "+": the count for records applying exactly those.
        "generation.value_samples": [v for key in config.generation.value_samples for v in key.split("+")],
        "judges.values": list(config.judges.values),
    }
    for where, ids in named.items():
        unknown = [v for v in ids if v not in registry.ids]
        if unknown:
            raise ConfigError(
                f"{where}: unknown value id(s) {', '.join(map(repr, unknown))} "
                f"(registry {registry.name!r} has {', '.join(registry.ids)})"
            )


def plan_records(
    prompts: list[str], config: BuildConfig, registry: Registry, selector: Any, rewriter: PromptRewriter
) -> Plan:
    """Dedup → selection → records. Harm rewrites happen here; bias rewrites after the violating
    image is judged (see ``livo.dataset.rewrite``)."""
    from livo.data.dedup import DedupConfig, dedup, normalize

    plan = Plan(records=[])
    result = dedup(
        prompts, DedupConfig(threshold=config.dedup.threshold, num_perm=config.dedup.num_perm, seed=config.dedup.seed)
    )
    empty = {int(i) for i in result.empty_rows}
    unique = [i for i in range(len(prompts)) if result.keep[i] and i not in empty]
    plan.stages["dedup"] = {
        "prompts": len(prompts),
        "unique": len(unique),
        "empty": len(empty),
        "exact_duplicates": result.exact_duplicates,
        "near_duplicates": result.near_duplicates,
    }
    plan.drops["duplicate_prompt"] = len(prompts) - len(unique) - len(empty)
    plan.drops["empty_prompt"] = len(empty)

    selections = selector.select([prompts[i] for i in unique]) if unique else []
    chosen = Counter[str]()
    wanted = set(config.selection.values) if config.selection.values else None
    generation = config.generation
    several = 0
    for i, selection in zip(unique, selections):
        first = selection.value_id
        found = tuple(getattr(selection, "value_ids", [first] if first else []))
        several += len(found) > 1
        if not found:
            plan.drops["no_value"] += 1
            continue
        # The values to build first, then the first of them: with `values: [racial-equality]`, "a
        # doctor" (gender-equality, racial-equality) is a racial-equality prompt, not one to drop.
        built = [v for v in found if wanted is None or v in wanted]
        if not built:
            plan.drops["value_not_built"] += 1
            continue
        applied = tuple(built[: config.selection.max_values_per_prompt])
        value_id = applied[0]
        prompt = prompts[i]
        aligned = None
        harms = [registry.value(v) for v in applied if registry.value(v).kind == "harm"]
        if harms:
            aligned = prompt
            for harm in harms:  # every harm value's wording goes; bias classes are inserted later
                aligned = rewriter.rewrite(aligned, harm, None)
            if aligned.strip() == prompt.strip() or not aligned.strip():
                plan.drops["rewrite_unchanged"] += 1
                continue
        key = "+".join(applied)
        chosen[key] += 1
        normalized = normalize(prompt)
        for sample in range(generation.samples_for(applied)):
            rid = record_id(normalized, key, sample)
            plan.records.append(
                PlannedRecord(
                    rid,
                    int(result.cluster_id[i]),
                    prompt,
                    value_id,
                    sample,
                    seed_of(rid),
                    aligned,
                    selected=found,
                    value_ids=applied if len(applied) > 1 else (),
                )
            )
    plan.stages["selection"] = {
        "prompts": len(unique),
        "with_value": sum(chosen.values()),
        # prompts with several values: the pair is built for the first (harm values come first)
        "several_values": several,
        **{f"value:{k}": n for k, n in sorted(chosen.items())},
    }
    plan.stages["plan"] = {"records": len(plan.records)}
    plan.drops = Counter({k: n for k, n in plan.drops.items() if n})
    return plan
