"""Benchmark of adaptive value selection: quality on the prompt-log set, speed on real-length prompts.

In one run, with the default registry:

1. builds the index as a user does (``livo values build-index default``: FAISS exemplars plus the
   value classifier fitted on the shipped labelled prompts), and reports the classifier's
   cross-validated macro-F1 and benign false-positive rate;
2. scores the selector and the keyword baseline (the reference's rules) on the prompt-log dev split
   (the classifier was fitted on it: optimistic, printed for the error analysis) and, with
   ``--sealed``, on the sealed test split (scored once, at the end of a piece of work);
3. runs ``livo values select`` on the shipped 5,000-prompt sample file (about 20 words a prompt)
   ``--runs`` times and reports the median of its own timing (selection only, after loading);
4. measures cold load: ``livo values select`` on a one-prompt file, process start to exit, median
   of ``--runs``.

    .venv/bin/python benchmarks/value_selection.py [--embedder minilm-int8] [--runs 3] [--sealed] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "python" / "livo" / "data" / "samples" / "prompts.txt"


def livo(*args: str) -> tuple[float, str]:
    """Runs the ``livo`` CLI of this environment; returns wall seconds and its output."""
    start = time.perf_counter()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "livo"), *args], capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"livo {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return seconds, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--embedder", default=None, help="embedder spec (default: build-index's default)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of select and of cold load (median)")
    parser.add_argument("--sealed", action="store_true", help="also score the sealed prompt-log test split")
    parser.add_argument("--json", dest="json_path", help="write all numbers here")
    args = parser.parse_args()

    from livo.values.evaluation import KeywordBaseline
    from livo.values.multilabel import format_multilabel, load_multilabel, promptlog_path, score_multilabel
    from livo.values.selector import ValueSelector

    workdir = Path(tempfile.mkdtemp(prefix="livo-values-bench-"))
    index_dir = workdir / "index"
    build = ["values", "build-index", "default", "-o", str(index_dir)]
    build_s, build_out = livo(*build, *(["--embedder", args.embedder] if args.embedder else []))
    print(build_out.strip())

    selector = ValueSelector.load(index_dir)
    ids = selector.registry.ids
    assert selector.classifier is not None
    numbers: dict[str, object] = {
        "embedder": selector.embedder.identity.to_json(),
        "build_index_s": build_s,
        "classifier": {k: v for k, v in selector.classifier.summary.items() if k != "training_prompts"},
        "thresholds": dict(zip(selector.classifier.targets, map(float, selector.classifier.thresholds))),
    }
    splits = ["dev"] + (["test"] if args.sealed else [])
    baseline = KeywordBaseline(selector.registry)
    for split in splits:
        rows = load_multilabel(promptlog_path(split))
        prompts = [r.prompt for r in rows]
        ours = score_multilabel(rows, selector.select(prompts), ids)
        theirs = score_multilabel(rows, baseline.select(prompts), ids, worst=0)
        print(format_multilabel(f"selector, prompt-log {split}", ours, ids, errors=20 if split == "dev" else 0))
        print(format_multilabel(f"keyword baseline, prompt-log {split}", theirs, ids, errors=0))
        numbers[f"promptlog_{split}"] = {"selector": ours.to_json(), "keyword_baseline": theirs.to_json()}

    out = workdir / "selected.parquet"
    rates = []
    for _ in range(args.runs):
        _, printed = livo(
            "values", "select", "--index", str(index_dir), "--input", str(SAMPLE), "--output", str(out), "--overwrite"
        )
        found = re.search(r"\(([\d,]+)/s\)", printed)
        assert found, printed
        rates.append(float(found.group(1).replace(",", "")))
    one = workdir / "one.txt"
    one.write_text("a bloody nurse in a hospital corridor\n")
    colds = [
        livo("values", "select", "--index", str(index_dir), "--input", str(one), "--output", str(out), "--overwrite")[0]
        for _ in range(args.runs)
    ]
    load = os.getloadavg()
    numbers |= {
        "sample_prompts": sum(1 for _ in SAMPLE.open()),
        "select_prompts_per_s_runs": rates,
        "select_prompts_per_s_median": statistics.median(rates),
        "cold_select_s_runs": colds,
        "cold_select_s_median": statistics.median(colds),
        "load_average": load,
    }
    print(
        f"livo values select on {SAMPLE.name} ({numbers['sample_prompts']} prompts): "
        f"{', '.join(f'{r:.0f}' for r in rates)} prompts/s, median {statistics.median(rates):.0f}; "
        f"cold one-prompt select {', '.join(f'{c:.2f}' for c in colds)} s, median {statistics.median(colds):.2f} s; "
        f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
    )
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(numbers, indent=1))


if __name__ == "__main__":
    main()
