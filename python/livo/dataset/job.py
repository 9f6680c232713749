"""``build_dataset(config)``: the whole job, stage by stage.

1. **validate** — config, registry, value ids, prompt files, judges, the base model (loaded once
   in the driver) and the output folder's earlier settings; any problem stops the build here,
   before a single image is generated;
2. **plan** — sources → dedup → value selection → harm rewrites → records (``livo.dataset.plan``);
3. **resume** — records already in the shards or in the drop ledger are skipped;
4. **generate + judge** on Ray actors (``livo.dataset.execute``), **write** as results arrive
   (``livo.dataset.sink``);
5. **report** — verify the shards, count pairs per value and category, write ``build/report.json``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from livo.data.shards import ShardConfig
from livo.dataset.build_report import BuildReport
from livo.dataset.config import BuildConfig
from livo.dataset.execute import Progress, actor_nodes, batches_of, run_actor_pool, start_actors
from livo.dataset.generate import BatchResult, WorkerSpec
from livo.dataset.plan import Plan, check_value_ids, plan_records, read_sources, selector_for
from livo.dataset.rewrite import load_rewriter
from livo.dataset.sink import STATE_FOLDER, PairSink, read_ledger
from livo.errors import ConfigError, InputError
from livo.judges import JudgePanel
from livo.permissions import write_atomic
from livo.runtime import check_ray_settings, start_ray
from livo.values.registry import Registry, load_registry, resolve_registry_path

STATE_CONFIG = "config.json"
REPORT_NAME = "report.json"


def _read_state(config: BuildConfig) -> dict[str, Any] | None:
    """The output folder's earlier build state, or None for a new folder; a damaged one is an error
    (resuming over it unchecked could mix records made with other settings)."""
    state = Path(config.output.directory) / STATE_FOLDER / STATE_CONFIG
    if not state.exists():
        return None
    try:
        previous = json.loads(state.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise ConfigError(
            f"output.directory {config.output.directory}: {state} is not readable JSON ({error})"
        ) from None
    if not isinstance(previous, dict):
        raise ConfigError(f"output.directory {config.output.directory}: {state} is not a build state (not a mapping)")
    return previous


def sources_digest(prompts: list[str]) -> str:
    """SHA-256 of the sources' prompts in order. A record's ``cluster_id`` (its split key) is its
    cluster representative's row in these prompts, so other or reordered sources give the same
    record another cluster and split."""
    digest = hashlib.sha256()
    for prompt in prompts:
        digest.update(prompt.encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")
    return digest.hexdigest()


def check_output_state(config: BuildConfig, prompts: list[str] | None = None) -> None:
    """Refuses to resume an output folder built with other generation settings (its record ids
    would name images made differently) or, given ``prompts``, from other sources (its records'
    clusters and splits would be counted against other rows)."""
    previous = _read_state(config)
    folder = Path(config.output.directory)
    if previous is None:
        if folder.is_dir() and any(folder.iterdir()):
            # Not a build's folder (a user's files, or a pair dataset written by another command):
            # the build would write its shards and state among them, or append to that dataset.
            raise ConfigError(
                f"output.directory {folder}: exists, is not empty and holds no build (no "
                f"{STATE_FOLDER}/{STATE_CONFIG}); a build continues only a folder it began: choose an empty or new one"
            )
        return
    state = folder / STATE_FOLDER / STATE_CONFIG
    if previous.get("fingerprint") != config.generation_fingerprint():
        raise ConfigError(
            f"output.directory {config.output.directory}: was built with other generation settings "
            f"(model/steps/guidance/size/judges/rewrite; see {state}); use another output directory or the same settings"
        )
    earlier = previous.get("sources_sha256")
    if prompts is not None and earlier is not None and earlier != sources_digest(prompts):
        raise ConfigError(
            f"output.directory {config.output.directory}: was built from other sources (other files, "
            f"prompts or order; see {state}): a record's cluster and split are rows of its sources; "
            "use another output directory or the same sources"
        )


def check_image_kind(config: BuildConfig, device: str) -> dict[str, str]:
    """Records where this run makes images (``device`` and the dtype it resolves ``auto`` to) and
    refuses a resume that would make them another way: float16 images on a GPU beside float32
    images from a CPU are records of two models."""
    dtype = config.generation.dtype
    if dtype == "auto":
        dtype = "float16" if device == "cuda" else "float32"
    kind = {"device": device, "dtype": dtype}
    previous = _read_state(config) or {}
    earlier = previous.get("images")
    if earlier is not None and earlier != kind:
        raise ConfigError(
            f"output.directory {config.output.directory}: its images were made on {earlier.get('device')} in "
            f"{earlier.get('dtype')}; this run would make them on {device} in {dtype}. Set generation.dtype "
            "and generation.gpus_per_actor to continue as before, or use another output directory"
        )
    state = Path(config.output.directory) / STATE_FOLDER / STATE_CONFIG
    write_atomic(state, json.dumps({**previous, "images": kind}, indent=2, sort_keys=True).encode())
    return kind


def write_state(config: BuildConfig, prompts: list[str] | None = None) -> None:
    state = Path(config.output.directory) / STATE_FOLDER / STATE_CONFIG
    previous = _read_state(config) or {}
    data = {
        "fingerprint": config.generation_fingerprint(),
        "run_id": config.effective_run_id(),
        "config": config.model_dump(mode="json"),
    }
    if prompts is not None:
        data["sources_sha256"] = sources_digest(prompts)
    if "images" in previous:
        data["images"] = previous["images"]
    write_atomic(state, json.dumps(data, indent=2, sort_keys=True).encode())


def validate(config: BuildConfig) -> tuple[Registry, list[str], dict[str, int], Any]:
    """Everything that can be checked before generation; returns (registry, prompts, counts per
    source, rewriter)."""
    check_ray_settings(config.ray.address, config.ray.token_file)
    registry = load_registry(resolve_registry_path(config.selection.registry))
    check_value_ids(config, registry)
    prompts, per_source = read_sources(config.sources)
    rewriter = load_rewriter(config.rewrite.rewriter, registry)
    panel = JudgePanel(config.judges, registry)
    panel.check(config.selection.values or registry.ids)
    del panel
    # Imported here: `livo --help` registers this command, and torch and transformers take seconds.
    from livo.models.loading import check_base

    check_base(config.generation.model)  # the workers load the weights; this process only checks
    check_output_state(config, prompts)
    return registry, prompts, per_source, rewriter


def worker_spec(config: BuildConfig, registry: Registry, device: str | None = None) -> WorkerSpec:
    from livo import __version__

    g = config.generation
    return WorkerSpec(
        model=g.model,
        registry=registry,
        judges=config.judges,
        rewriter=config.rewrite.rewriter,
        steps=g.steps,
        guidance_scale=g.guidance_scale,
        height=g.height,
        width=g.width,
        dtype=g.dtype,
        torch_threads=g.torch_threads,
        device=device,
        created_by=f"livo {__version__} build-dataset",
        run_id=config.effective_run_id(),
    )


def _gpus_per_actor(config: BuildConfig) -> float:
    import ray

    wanted = config.generation.gpus_per_actor
    if wanted == "auto":
        return 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
    return float(wanted)


def build_dataset(
    config: BuildConfig,
    *,
    on_result: Callable[[BatchResult, list[Any]], None] | None = None,
) -> BuildReport:
    """Runs the build described by ``config`` and returns its report (also written to
    ``<output>/build/report.json``). Rerunning with the same config resumes. ``on_result`` is
    called in the driver after each batch is written, with the result and the actor handles."""
    started = time.perf_counter()
    registry, prompts, per_source, rewriter = validate(config)
    selector = selector_for(config, registry)
    plan: Plan = plan_records(prompts, config, registry, selector, rewriter)
    if not plan.records:
        raise InputError(
            f"sources: no prompt of {len(prompts)} was given a value to build "
            f"(dropped: {dict(plan.drops)}); check the sources and selection.registry"
        )
    report = BuildReport(run_id=config.effective_run_id(), output=config.output.directory)
    report.stages = {"sources": per_source, **plan.stages}
    drops = Counter(plan.drops)
    write_state(config, prompts)
    output = config.output
    shard_config = ShardConfig(
        splits=output.splits,
        target_shard_bytes=output.target_shard_bytes,
        row_group_bytes=output.row_group_bytes,
        metadata={"livo.dataset.fingerprint": config.generation_fingerprint()},
    )
    with PairSink(output.directory, shard_config, output.checkpoint_seconds) as sink:
        ids = [r.record_id for r in plan.records]
        stored = sink.contains(ids)
        ledger = read_ledger(output.directory)
        todo = [r.to_dict() for r, done in zip(plan.records, stored) if not done and r.record_id not in ledger]
        report.skipped_stored = sum(stored)
        report.skipped_dropped = sum(1 for r, done in zip(plan.records, stored) if not done and r.record_id in ledger)
        if todo:
            _generate(config, registry, todo, sink, report, drops, on_result)
    _finish(config, report, drops)
    report.wall_seconds = time.perf_counter() - started
    report.write(Path(output.directory) / STATE_FOLDER / REPORT_NAME)
    return report


def _generate(
    config: BuildConfig,
    registry: Registry,
    todo: list[dict[str, Any]],
    sink: PairSink,
    report: BuildReport,
    drops: Counter[str],
    on_result: Callable[[BatchResult, list[Any]], None] | None,
) -> None:
    import ray

    started_ray = False
    if not ray.is_initialized():
        start_ray(config.ray.address, config.ray.num_cpus, token_file=config.ray.token_file)
        started_ray = True
    try:
        g = config.generation
        batches = batches_of(todo, g.batch_size)
        gpus = _gpus_per_actor(config)
        device = "cuda" if gpus > 0 else "cpu"
        check_image_kind(config, device)
        actors = start_actors(
            worker_spec(config, registry, device),
            min(g.actors, len(batches)),
            g.cpus_per_actor,
            gpus,
            g.max_restarts,
            g.max_task_retries,
        )
        report.actors = len(actors)
        report.actor_nodes = actor_nodes(actors)
        progress = Progress(len(todo), enabled=config.progress)
        balance: dict[str, dict[str, Counter[str]]] = {}

        def consume(result: BatchResult) -> None:
            sink.accept(result)
            progress.update(len(batches[result.batch]), len(result.kept))
            for row in result.kept:
                if row.get("aligned_class") is not None:
                    key = "+".join(row["value_ids"])
                    sides = balance.setdefault(key, {"violating": Counter(), "aligned": Counter()})
                    sides["violating"][row["violating_class"]] += 1
                    sides["aligned"][row["aligned_class"]] += 1

        try:
            stats = run_actor_pool(actors, batches, consume, batch_retries=g.batch_retries, on_result=on_result)
        finally:
            progress.close()
            report.actor_nodes_at_end = actor_nodes(actors)
            for actor in actors:
                ray.kill(actor)
        report.generated = stats.records
        report.kept = stats.kept
        report.images = stats.images
        report.generation_seconds = stats.seconds
        report.retried_batches = stats.retried_batches
        report.failures = stats.failures
        drops.update(stats.drops)
        report.balance = {v: {side: dict(c) for side, c in sides.items()} for v, sides in balance.items()}
    finally:
        if started_ray:
            ray.shutdown()


def _finish(config: BuildConfig, report: BuildReport, drops: Counter[str]) -> None:
    from livo.data.shards import Manifest, shard_stats, verify_shards

    directory = config.output.directory
    manifest = Manifest.load(directory)
    report.dataset_rows = manifest.rows()
    report.dataset_shards = len(manifest.shards)
    report.verified = verify_shards(directory).ok
    report.drops = dict(drops)
    if manifest.shards:
        # By every value of a record: a two-value pair counts as "no_blood+colour_equality", not
        # as its first value.
        stats = shard_stats(directory, by=("value_ids", "category"))
        for row in stats.iter_rows(named=True):
            values = "+".join(row["value_ids"])
            report.pairs_per_value[values] = report.pairs_per_value.get(values, 0) + row["rows"]
            report.pairs_per_category[row["category"]] = report.pairs_per_category.get(row["category"], 0) + row["rows"]
