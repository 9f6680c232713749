"""Benchmark: livo.data.dedup against its peers on a labelled corpus: datasketch (Python MinHash +
MinHashLSH), rensa (Rust MinHash, 16 bands × 8 rows) and gaoya (Rust MinHash LSH, 9 × 13).

Every tool gets the same corpus (exact, formatting, Unicode and light-edit duplicates injected, see
``livo.data.synthetic``), the same normalisation, character n-gram size, number of permutations and
threshold, and is driven the way its documentation shows. Each run is its own subprocess, so its
peak memory (max RSS) is its own; every tool runs ``--repeats`` times (median reported). Quality is
pairwise precision/recall/F1 against the known clusters. ``--startup`` also times ``livo dedup`` on a
three-line file (process start to exit).

    uv run python benchmarks/dedup.py --rows 200000 --startup
    uv run python benchmarks/dedup.py --rows 200000 --seed 20261205     # the sealed corpus
    uv run python benchmarks/dedup.py --rows 1000000 --tools livo
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np


def pair_counts(labels: np.ndarray) -> int:
    _, sizes = np.unique(labels, return_counts=True)
    return int((sizes * (sizes - 1) // 2).sum())


def pairwise_scores(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Pairwise precision, recall and F1 of a clustering against the true one."""
    joint = predicted.astype(np.int64) * (int(truth.max()) + 1) + truth
    both = pair_counts(joint)
    pred, true = pair_counts(predicted), pair_counts(truth)
    precision = both / pred if pred else 1.0
    recall = both / true if true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def run_livo(texts: list[str], args: argparse.Namespace, verify: bool) -> np.ndarray:
    import pyarrow as pa

    from livo.data import DedupConfig, dedup

    config = DedupConfig(
        threshold=args.threshold, num_perm=args.num_perm, ngram=args.ngram, verify=verify, threads=args.threads
    )
    return dedup(pa.array(texts, pa.large_string()), config).cluster_id


def run_datasketch(texts: list[str], args: argparse.Namespace) -> np.ndarray:
    """What a Python user would write: normalise, shingle, MinHash each prompt, query-then-insert
    into MinHashLSH, union-find over the hits."""
    import re
    import unicodedata

    from datasketch import MinHash, MinHashLSH

    strip = re.compile(r"[\W_]+")
    lsh = MinHashLSH(threshold=args.threshold, num_perm=args.num_perm)
    parent = list(range(len(texts)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    n = args.ngram
    for i, text in enumerate(texts):
        norm = " ".join(strip.sub(" ", unicodedata.normalize("NFKC", text).casefold()).split())
        grams = {norm[j : j + n] for j in range(max(1, len(norm) - n + 1))}
        m = MinHash(num_perm=args.num_perm, seed=1)
        m.update_batch([g.encode("utf-8") for g in grams])
        for hit in lsh.query(m):
            a, b = find(i), find(hit)
            if a != b:
                parent[max(a, b)] = min(a, b)
        lsh.insert(i, m)
    return np.array([find(i) for i in range(len(texts))], dtype=np.int64)


def python_normalise(text: str) -> str:
    """The normalisation a Python user writes for the peers (NFKC, case folding, punctuation to spaces)."""
    import re
    import unicodedata

    return " ".join(re.sub(r"[\W_]+", " ", unicodedata.normalize("NFKC", text).casefold()).split())


def union_hits(n: int, query_then_insert) -> np.ndarray:
    """Union-find over ``query_then_insert(i)``'s hits, the smallest row of each cluster its id."""
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i in range(n):
        for hit in query_then_insert(i):
            a, b = find(i), find(int(hit))
            if a != b:
                parent[max(a, b)] = min(a, b)
    return np.array([find(i) for i in range(n)], dtype=np.int64)


def run_rensa(texts: list[str], args: argparse.Namespace) -> np.ndarray:
    """rensa's documented use: an RMinHash per text over its shingles, query-then-insert into an
    RMinHashLSH with 16 bands (of 8 rows for 128 permutations)."""
    from rensa import RMinHash, RMinHashLSH

    lsh = RMinHashLSH(threshold=args.threshold, num_perm=args.num_perm, num_bands=16)
    n = args.ngram

    def step(i: int) -> list[int]:
        norm = python_normalise(texts[i])
        m = RMinHash(num_perm=args.num_perm, seed=1)
        m.update(list({norm[j : j + n] for j in range(max(1, len(norm) - n + 1))}))
        hits = lsh.query(m)
        lsh.insert(i, m)
        return hits

    return union_hits(len(texts), step)


def run_gaoya(texts: list[str], args: argparse.Namespace) -> np.ndarray:
    """gaoya's MinHashStringIndex with its Rust char n-gram analyzer, 9 bands × 13 rows, bulk insert
    then a parallel bulk query (hits are filtered by gaoya's estimated similarity)."""
    from gaoya.minhash import MinHashStringIndex

    norms = [python_normalise(t) for t in texts]
    index = MinHashStringIndex(
        hash_size=32,
        jaccard_threshold=args.threshold,
        num_bands=9,
        band_size=13,
        analyzer="char",
        ngram_range=(args.ngram, args.ngram),
    )
    index.par_bulk_insert_docs(list(range(len(norms))), norms)
    hits = index.par_bulk_query(norms)
    return union_hits(len(texts), lambda i: hits[i])


def child(args: argparse.Namespace) -> None:
    from livo.data.synthetic import labelled_corpus

    corpus = labelled_corpus(args.rows, seed=args.seed)
    start = time.perf_counter()
    if args.child == "datasketch":
        predicted = run_datasketch(corpus.texts, args)
    elif args.child == "rensa":
        predicted = run_rensa(corpus.texts, args)
    elif args.child == "gaoya":
        predicted = run_gaoya(corpus.texts, args)
    else:
        predicted = run_livo(corpus.texts, args, verify=args.child == "livo")
    seconds = time.perf_counter() - start
    scores = pairwise_scores(predicted, np.array(corpus.cluster, dtype=np.int64))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    import hashlib

    digest = hashlib.sha256(predicted.astype(np.int64).tobytes()).hexdigest()[:16]
    print(
        json.dumps(
            {
                "tool": args.child,
                "rows": args.rows,
                "seconds": seconds,
                "clusters_sha256": digest,
                "rows_per_s": args.rows / seconds,
                "peak_rss_mb": peak_mb,
                **scores,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--tools", default="livo,livo-noverify,rensa,gaoya,datasketch")
    parser.add_argument("--repeats", type=int, default=3, help="runs per tool; the median time is reported")
    parser.add_argument("--startup", action="store_true", help="also time `livo dedup` on a three-line file")
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--num-perm", type=int, default=128)
    parser.add_argument("--ngram", type=int, default=5)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.repeats < 1 or args.repeats % 2 == 0:
        parser.error(
            "--repeats: an odd number, so that the median is one of the runs (its memory and quality are reported)"
        )
    if args.child:
        child(args)
        return
    results = []
    for tool in args.tools.split(","):
        cmd = [sys.executable, __file__, "--child", tool, "--rows", str(args.rows), "--threshold", str(args.threshold)]
        cmd += ["--num-perm", str(args.num_perm), "--ngram", str(args.ngram), "--seed", str(args.seed)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        runs = []
        for _ in range(args.repeats):
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))
            print(json.dumps(runs[-1]), file=sys.stderr)
        assert len({r["clusters_sha256"] for r in runs}) == 1, f"{tool}: runs disagree"
        median = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
        results.append(median | {"all_seconds": [round(r["seconds"], 3) for r in runs]})
    base = next((r for r in results if r["tool"] == "datasketch"), None)
    rensa = next((r for r in results if r["tool"] == "rensa"), None)
    print(
        f"\n{args.rows:,} prompts (seed {args.seed}), ngram {args.ngram}, num_perm {args.num_perm}, "
        f"threshold {args.threshold}, median of {args.repeats} runs, load {os.getloadavg()[0]:.2f}\n"
    )
    print(
        "| tool | seconds (runs) | prompts/s | vs datasketch | vs rensa | peak RSS (MB) | precision | recall | F1 "
        "| clusters sha256 |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        over_datasketch = f"{base['seconds'] / r['seconds']:.1f}×" if base else "—"
        over_rensa = f"{rensa['seconds'] / r['seconds']:.1f}×" if rensa else "—"
        print(
            f"| {r['tool']} | {r['seconds']:.2f} ({', '.join(f'{x:.2f}' for x in r['all_seconds'])}) "
            f"| {r['rows_per_s']:,.0f} | {over_datasketch} | {over_rensa} | {r['peak_rss_mb']:.0f} "
            f"| {r['precision']:.4f} | {r['recall']:.4f} | {r['f1']:.4f} | {r['clusters_sha256']} |"
        )
    if args.startup:
        print(f"\n`livo dedup` on a three-line file, process start to exit: {startup_seconds(args.repeats)}")


def startup_seconds(repeats: int) -> str:
    import shutil
    import tempfile
    from pathlib import Path

    livo = shutil.which("livo") or str(Path(sys.executable).with_name("livo"))
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "prompts.txt"
        source.write_text("a red fox\nA red fox!\na blue car\n")
        times = []
        for k in range(repeats):
            started = time.perf_counter()
            subprocess.run(
                [livo, "dedup", str(source), "-o", str(Path(folder) / f"out{k}.parquet")],
                check=True,
                capture_output=True,
            )
            times.append(time.perf_counter() - started)
    return f"median {sorted(times)[len(times) // 2]:.2f} s ({', '.join(f'{t:.2f}' for t in times)})"


if __name__ == "__main__":
    main()
