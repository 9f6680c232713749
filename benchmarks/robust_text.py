"""Benchmark: robust normalisation and keyword matching throughput (prompts per second).

The 5,000 sample prompts (``python/livo/data/samples/prompts.txt``) are repeated to ``--prompts``
(1M by default) and passed as one batch to ``normalize_robust`` and to the keyword matcher built
from the built-in registry's harm values (the first ``--terms-per-value`` keywords of each, with
all their exception phrases: 60 terms by default). Each call runs ``--runs`` times after a
warm-up; the median is reported with the machine's load average around the runs, because the
rate depends on how many cores are free.

    uv run python benchmarks/robust_text.py
    uv run python benchmarks/robust_text.py --prompts 2000000 --terms-per-value 100 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from importlib.resources import files
from typing import Any

from livo.values.registry import builtin_registry_path, load_registry
from livo.values.robust_text import RobustKeywords, normalize_robust

# Real words one edit (two for long terms) from a harm keyword of the registry.
PROTECTED = ["baked", "blond", "bloom", "flood", "corps", "feeding", "breeding", "horrors"]


def sample_prompts(count: int) -> list[str]:
    lines = files("livo.data").joinpath("samples/prompts.txt").read_text(encoding="utf-8").splitlines()
    return (lines * (count // len(lines) + 1))[:count]


def harm_keywords(per_value: int) -> tuple[list[list[str]], list[list[str]]]:
    registry = load_registry(builtin_registry_path())
    harm = [v for v in registry.values if v.kind == "harm" and v.keywords]
    return [list(v.keywords[:per_value]) for v in harm], [list(v.keyword_exceptions) for v in harm]


def measure(call: Callable[[], Any], count: int, runs: int) -> dict[str, Any]:
    """Median prompts/s of ``runs`` timed calls after one warm-up, with the load before and after."""
    call()
    rates = []
    load_before = os.getloadavg()
    for _ in range(runs):
        start = time.perf_counter()
        call()
        rates.append(count / (time.perf_counter() - start))
    return {
        "median_prompts_per_s": round(statistics.median(rates)),
        "runs_prompts_per_s": [round(r) for r in rates],
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=1_000_000)
    parser.add_argument("--terms-per-value", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    texts = sample_prompts(args.prompts)
    groups, exceptions = harm_keywords(args.terms_per_value)
    keywords = RobustKeywords(groups, exceptions, PROTECTED)
    hits = sum(1 for row in keywords.match(texts[:5_000]) if row)
    results = {
        "prompts": len(texts),
        "mean_chars": round(sum(map(len, texts[:5_000])) / 5_000, 1),
        "terms": sum(map(len, groups)),
        "exception_phrases": sum(map(len, exceptions)),
        "sample_prompts_with_a_hit": hits,
        "cpus": len(os.sched_getaffinity(0)),
        "normalize_robust": measure(lambda: normalize_robust(texts), len(texts), args.runs),
        "match": measure(lambda: keywords.match(texts), len(texts), args.runs),
    }
    print(json.dumps(results))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(results, out, indent=2)

    print(
        f"\n{results['prompts']:,} prompts ({results['mean_chars']} characters on average), "
        f"{results['terms']} terms and {results['exception_phrases']} exception phrases, {results['cpus']} CPUs\n"
    )
    print("| call | prompts/s (median) | runs | load avg before → after (1, 5, 15 min) |")
    print("| --- | --- | --- | --- |")
    for name in ("normalize_robust", "match"):
        r = results[name]
        runs = ", ".join(f"{x:,}" for x in r["runs_prompts_per_s"])
        print(f"| {name} | {r['median_prompts_per_s']:,} | {runs} | {r['load_before']} → {r['load_after']} |")


if __name__ == "__main__":
    main()
