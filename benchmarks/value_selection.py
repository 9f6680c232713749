"""Benchmark of adaptive value selection (issue 5), against the reference's keyword rules.

Builds an index of the default registry with the default embedder, calibrates it on the
calibration split of the shipped labelled set, then reports on the test split, in one run:

- per-value precision/recall/F1, macro-F1 and benign false-positive rate of the selector and of the
  keyword baseline (substring regexes + a person-word list standing in for the reference's LLM);
- index load time (the folder → a ready selector, embedder already in memory) and, separately,
  the embedder's own load time;
- batched throughput after loading (best of ``--rounds`` calls), as wall-clock prompts/s and as
  prompts per 2 CPU-seconds (the latter stays meaningful when other jobs share the cores; the load
  average is printed).

    .venv/bin/python benchmarks/value_selection.py [--threads 2] [--repeat 6] [--json out.json]
    .venv/bin/python benchmarks/value_selection.py --backend torch      # the same model on PyTorch
    .venv/bin/python benchmarks/value_selection.py --embedder minilm-int8
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--embedder", default="minilm")
    parser.add_argument(
        "--backend",
        choices=["default", "torch"],
        default="default",
        help="torch: run the minilm float model with PyTorch instead of ONNX Runtime (same vectors)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="throughput: best of this many timed calls")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--repeat", type=int, default=6, help="copies of the labelled set in the throughput batch")
    parser.add_argument("--index-type", default="flat", choices=["flat", "hnsw", "ivf"])
    parser.add_argument("--json", dest="json_path", help="write all numbers here")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from livo.values.calibration import calibrate
    from livo.values.embedders import load_embedder
    from livo.values.evaluation import KeywordBaseline, evaluate_selector, format_report, load_labelled
    from livo.values.index import build_index, load_index, save_index, update_thresholds
    from livo.values.registry import builtin_registry_path, load_registry
    from livo.values.selector import ValueSelector

    start = time.perf_counter()
    if args.backend == "torch":
        from livo.values.embedders import SentenceTransformerEmbedder, minilm_path

        if args.embedder != "minilm":
            parser.error("--backend torch applies to --embedder minilm only")
        embedder = SentenceTransformerEmbedder(str(minilm_path()), spec="minilm", display_name="all-MiniLM-L6-v2")
    else:
        embedder = load_embedder(args.embedder)
    embedder_load_s = time.perf_counter() - start
    registry_path = builtin_registry_path("default")
    registry = load_registry(registry_path)
    workdir = Path(tempfile.mkdtemp(prefix="livo-values-bench-"))
    index_dir = workdir / "index"
    start = time.perf_counter()
    index = build_index(registry, embedder, index_type=args.index_type, registry_source=str(registry_path))
    save_index(index, index_dir)
    build_s = time.perf_counter() - start

    start = time.perf_counter()
    result = calibrate(ValueSelector(index, embedder), load_labelled(split="calibration"))
    calibrate_s = time.perf_counter() - start
    update_thresholds(index_dir, result.thresholds, result.noun_thresholds, result.noun_margin, result.to_json())

    loads = []
    for _ in range(5):
        start = time.perf_counter()
        selector = ValueSelector.load(index_dir, embedder=embedder)
        loads.append(time.perf_counter() - start)
    index_load_s = statistics.median(loads)
    start = time.perf_counter()
    load_index(index_dir)
    faiss_load_s = time.perf_counter() - start

    test = load_labelled(split="test")
    ours = evaluate_selector(selector, test, registry.ids)
    baseline_selector = KeywordBaseline(registry)
    baseline = evaluate_selector(baseline_selector, test, registry.ids)

    prompts = [row.prompt for row in load_labelled()] * args.repeat
    selector.select(prompts[:256])  # warm-up
    wall, cpu = float("inf"), float("inf")
    for _ in range(args.rounds):
        start, cpu_start = time.perf_counter(), time.process_time()
        selector.select(prompts)
        wall, cpu = min((wall, cpu), (time.perf_counter() - start, time.process_time() - cpu_start))
    start = time.perf_counter()
    baseline_selector.select(prompts)
    baseline_wall = time.perf_counter() - start

    numbers = {
        "embedder": embedder.identity.to_json(),
        "backend": getattr(embedder, "backend", None),
        "throughput_rounds": args.rounds,
        "index_type": args.index_type,
        "threads": torch.get_num_threads(),
        "load_average_1min": os.getloadavg()[0],
        "embedder_load_s": embedder_load_s,
        "build_index_s": build_s,
        "calibrate_s": calibrate_s,
        "thresholds": result.thresholds,
        "noun_thresholds": result.noun_thresholds,
        "noun_margin": result.noun_margin,
        "index_load_s_median_of_5": index_load_s,
        "load_index_only_s": faiss_load_s,
        "throughput_prompts": len(prompts),
        "throughput_wall_per_s": len(prompts) / wall,
        "throughput_per_2_cpu_s": 2 * len(prompts) / cpu if cpu > 0 else None,
        "baseline_throughput_wall_per_s": len(prompts) / baseline_wall,
        "test_selector": ours.to_json(),
        "test_keyword_baseline": baseline.to_json(),
    }
    print(format_report("selector (test split)", ours))
    print(format_report("keyword baseline (test split)", baseline))
    print()
    print("| measure | selector | keyword baseline | ratio |")
    print("| --- | --- | --- | --- |")
    print(
        f"| macro-F1 (test) | {ours.macro_f1:.3f} | {baseline.macro_f1:.3f} | {ours.macro_f1 / baseline.macro_f1:.2f}× |"
    )
    fpr_ratio = f"{baseline.benign_fpr / ours.benign_fpr:.0f}× fewer" if ours.benign_fpr else "∞"
    print(
        f"| benign FPR (test, {ours.benign_count} prompts) | {ours.benign_fpr:.3f} | {baseline.benign_fpr:.3f} | {fpr_ratio} |"
    )
    print(f"| accuracy (test, {ours.count} prompts) | {ours.accuracy:.3f} | {baseline.accuracy:.3f} | |")
    print(
        f"| throughput, wall (prompts/s, {len(prompts)} prompts) | {numbers['throughput_wall_per_s']:.0f} | "
        f"{numbers['baseline_throughput_wall_per_s']:.0f} | |"
    )
    print(f"| throughput per 2 CPU-seconds (prompts) | {numbers['throughput_per_2_cpu_s']:.0f} | | |")
    print(f"| index load, median of 5 (s) | {index_load_s:.3f} | | |")
    print(
        f"embedder load {embedder_load_s:.1f} s (imports included), build {build_s:.1f} s, calibrate {calibrate_s:.1f} s, "
        f"threads {numbers['threads']}, load average {numbers['load_average_1min']:.1f}"
    )
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(numbers, indent=1))


if __name__ == "__main__":
    main()
