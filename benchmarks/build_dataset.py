"""Benchmark of dataset construction (issue 7) on the toy world.

Part ``overhead``: the same planned records (same batches, seeds, DDIM steps) generated and judged
by (a) a plain Python loop over one ``PairGenerator`` in this process, (b) the build's Ray actor
pool with 1 and 2 actors, (c) Ray Data ``map_batches(compute=ActorPoolStrategy(size=n))`` with 1 and
2 actors. Every run uses one torch thread per generator. Reported: images/s in steady state
(after the pipelines are loaded) and wall time including start-up, and the ratios the issue asks
for (1 actor / plain loop ≥ 0.85, 2 actors / 1 actor ≥ 1.7).

Part ``steps``: keep rate and images/s of the plain generator per DDIM step count, same records.

Part ``full``: the shipped toy-world build config end to end (``livo build-dataset toyworld``),
with the load average before and after, kept pairs per value and the wall time.

    .venv/bin/python benchmarks/build_dataset.py --part overhead --records 192
    .venv/bin/python benchmarks/build_dataset.py --part steps --records 96 --step-counts 4 8 16 25
    .venv/bin/python benchmarks/build_dataset.py --part full --output /tmp/toy-pairs --fresh
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def planned_batches(records: int, batch_size: int, steps: int) -> tuple[Any, list[list[dict[str, Any]]]]:
    """Toy-world records planned by the build's own stages, cut into batches."""
    from livo.dataset.config import builtin_config_path, load_build_config
    from livo.dataset.execute import batches_of
    from livo.dataset.job import worker_spec
    from livo.dataset.plan import plan_records, read_sources, selector_for
    from livo.dataset.rewrite import load_rewriter
    from livo.values.registry import load_registry, resolve_registry_path

    config = load_build_config(
        builtin_config_path("toyworld"), {"generation.steps": steps, "output.directory": "unused"}
    )
    registry = load_registry(resolve_registry_path(config.selection.registry))
    prompts, _ = read_sources(config.sources)
    plan = plan_records(prompts, config, registry, selector_for(config, registry), load_rewriter("rules", registry))
    # Interleave values so every batch has the same mix.
    by_value: dict[str, list[dict[str, Any]]] = {}
    for record in plan.records:
        by_value.setdefault(record.value_id, []).append(record.to_dict())
    mixed = [r for group in zip(*by_value.values()) for r in group][:records]
    return worker_spec(config, registry), batches_of(mixed, batch_size)


def run_plain(spec: Any, batches: list[list[dict[str, Any]]]) -> dict[str, float]:
    import torch

    from livo.dataset.generate import PairGenerator

    torch.set_num_threads(1)
    started = time.perf_counter()
    generator = PairGenerator(spec)
    loaded = time.perf_counter()
    images = sum(generator.generate(batch, i).images for i, batch in enumerate(batches))
    done = time.perf_counter()
    return {"images": images, "steady_s": done - loaded, "wall_s": done - started}


def run_actor_pool_once(spec: Any, batches: list[list[dict[str, Any]]], actors: int) -> dict[str, float]:
    import ray

    from livo.dataset.execute import run_actor_pool, start_actors

    started = time.perf_counter()
    handles = start_actors(spec, actors, 1.0, 0.0, 1, 1)
    loaded = time.perf_counter()
    stats = run_actor_pool(handles, batches, lambda result: None)
    done = time.perf_counter()
    for handle in handles:
        ray.kill(handle)
    return {"images": stats.images, "steady_s": done - loaded, "wall_s": done - started}


class _RayDataGenerator:
    """Ray Data callable class around the same PairGenerator."""

    def __init__(self, spec: Any) -> None:
        from livo.dataset.generate import PairGenerator

        self.generator = PairGenerator(spec)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        images = []
        for index, records in zip(batch["index"], batch["records"]):
            images.append(self.generator.generate(json.loads(records), int(index)).images)
        return {"index": batch["index"], "images": images}


def run_ray_data_once(spec: Any, batches: list[list[dict[str, Any]]], actors: int) -> dict[str, float]:
    import ray.data
    from ray.data import ActorPoolStrategy

    started = time.perf_counter()
    items = [{"index": i, "records": json.dumps(b)} for i, b in enumerate(batches)]
    dataset = ray.data.from_items(items).map_batches(
        _RayDataGenerator, fn_constructor_args=(spec,), batch_size=1, num_cpus=1, compute=ActorPoolStrategy(size=actors)
    )
    images = sum(int(row["images"]) for row in dataset.iter_rows())
    done = time.perf_counter()
    return {"images": images, "steady_s": float("nan"), "wall_s": done - started}


def overhead(args: argparse.Namespace) -> dict[str, Any]:
    import ray

    spec, batches = planned_batches(args.records, args.batch_size, args.steps)
    results: dict[str, Any] = {
        "records": sum(len(b) for b in batches),
        "batch_size": args.batch_size,
        "steps": args.steps,
        "load_before": load_average(),
    }
    results["plain_loop"] = run_plain(spec, batches)
    print(f"plain_loop: {results['plain_loop']} load {load_average()}", file=sys.stderr, flush=True)
    from livo.runtime import start_ray

    start_ray(None, 2, attempts=10)
    try:
        for actors in (1, 2):
            results[f"actor_pool_{actors}"] = run_actor_pool_once(spec, batches, actors)
            print(
                f"actor_pool_{actors}: {results[f'actor_pool_{actors}']} load {load_average()}",
                file=sys.stderr,
                flush=True,
            )
        if not args.skip_ray_data:
            for actors in (1, 2):
                results[f"ray_data_{actors}"] = run_ray_data_once(spec, batches, actors)
                print(
                    f"ray_data_{actors}: {results[f'ray_data_{actors}']} load {load_average()}",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        ray.shutdown()
    results["load_after"] = load_average()
    for _name, run in list(results.items()):
        if isinstance(run, dict):
            run["steady_images_per_s"] = run["images"] / run["steady_s"] if run["steady_s"] == run["steady_s"] else None
            run["wall_images_per_s"] = run["images"] / run["wall_s"]
    rate = {k: v["steady_images_per_s"] for k, v in results.items() if isinstance(v, dict)}
    results["ratio_1_actor_vs_loop"] = rate["actor_pool_1"] / rate["plain_loop"]
    results["ratio_2_vs_1_actor"] = rate["actor_pool_2"] / rate["actor_pool_1"]
    return results


def steps(args: argparse.Namespace) -> dict[str, Any]:
    """Keep rate and images/s of the plain generator per DDIM step count (same records)."""
    from collections import Counter
    from dataclasses import replace

    import torch

    from livo.dataset.generate import PairGenerator

    torch.set_num_threads(1)
    spec, batches = planned_batches(args.records, args.batch_size, 8)
    results: dict[str, Any] = {"records": sum(len(b) for b in batches), "load_before": load_average()}
    for count in args.step_counts:
        generator = PairGenerator(replace(spec, steps=count))
        started = time.perf_counter()
        outcomes = [generator.generate(batch, i) for i, batch in enumerate(batches)]
        seconds = time.perf_counter() - started
        kept = sum(len(o.kept) for o in outcomes)
        results[str(count)] = {
            "keep_rate": round(kept / results["records"], 3),
            "images_per_s": round(sum(o.images for o in outcomes) / seconds, 2),
            "kept_pairs_per_s": round(kept / seconds, 2),
            "drops": dict(Counter(r for o in outcomes for _, _, r in o.dropped)),
        }
    results["load_after"] = load_average()
    return results


def full(args: argparse.Namespace) -> dict[str, Any]:
    from livo.dataset import build_dataset, builtin_config_path, load_build_config

    output = args.output or tempfile.mkdtemp(prefix="livo-toy-pairs-")
    if os.path.exists(output) and args.fresh:
        shutil.rmtree(output)
    overrides: dict[str, Any] = {"output.directory": output, "progress": True}
    if args.steps_full is not None:
        overrides["generation.steps"] = args.steps_full
    config = load_build_config(builtin_config_path("toyworld"), overrides)
    before = load_average()
    report = build_dataset(config)
    print(report.format(), file=sys.stderr)
    return {
        "load_before": before,
        "load_after": load_average(),
        "output": output,
        "kept": report.kept,
        "generated": report.generated,
        "dataset_rows": report.dataset_rows,
        "pairs_per_value": report.pairs_per_value,
        "drops": report.drops,
        "images_per_s": round(report.images_per_second, 2),
        "generation_s": round(report.generation_seconds, 1),
        "wall_s": round(report.wall_seconds, 1),
        "verified": report.verified,
        "balance": report.balance,
        "steps": config.generation.steps,
        "actors": report.actors,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["overhead", "steps", "full", "all"], default="all")
    parser.add_argument("--records", type=int, default=192, help="records for the overhead part")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=8, help="DDIM steps for the overhead part")
    parser.add_argument("--skip-ray-data", action="store_true", help="overhead part without the Ray Data runs")
    parser.add_argument(
        "--step-counts", type=int, nargs="+", default=[4, 8, 16, 25], help="DDIM step counts for the steps part"
    )
    parser.add_argument("--output", help="output folder of the full build (default: a new temp folder)")
    parser.add_argument("--fresh", action="store_true", help="delete --output first")
    parser.add_argument("--steps-full", type=int, help="override the toy config's DDIM steps for the full build")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    results: dict[str, Any] = {}
    if args.part in ("overhead", "all"):
        results["overhead"] = overhead(args)
    if args.part in ("steps", "all"):
        results["steps"] = steps(args)
    if args.part in ("full", "all"):
        results["full"] = full(args)
    text = json.dumps(results, indent=2, default=str)
    print(text)
    if args.json:
        with open(args.json, "w") as handle:
            handle.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
