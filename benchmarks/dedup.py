"""Benchmark: livo.data.dedup against datasketch (MinHash + MinHashLSH) on a labelled corpus.

Both tools get the same corpus (exact, formatting, Unicode and light-edit duplicates injected, see
``livo.data.synthetic``), the same character n-gram size, number of permutations and threshold.
Each tool runs in its own subprocess so that its peak memory (max RSS) is its own. Quality is
pairwise precision/recall/F1 against the known clusters.

    uv run python benchmarks/dedup.py --rows 200000
    uv run python benchmarks/dedup.py --rows 1000000 --tools livo
"""

from __future__ import annotations

import argparse
import json
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


def child(args: argparse.Namespace) -> None:
    from livo.data.synthetic import labelled_corpus

    corpus = labelled_corpus(args.rows, seed=args.seed)
    start = time.perf_counter()
    if args.child == "datasketch":
        predicted = run_datasketch(corpus.texts, args)
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
    parser.add_argument("--tools", default="livo,livo-noverify,datasketch")
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--num-perm", type=int, default=128)
    parser.add_argument("--ngram", type=int, default=5)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    results = []
    for tool in args.tools.split(","):
        cmd = [
            sys.executable,
            __file__,
            "--child",
            tool,
            "--rows",
            str(args.rows),
            "--threshold",
            str(args.threshold),
            "--num-perm",
            str(args.num_perm),
            "--ngram",
            str(args.ngram),
            "--seed",
            str(args.seed),
        ]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), file=sys.stderr)
    base = next((r for r in results if r["tool"] == "datasketch"), None)
    print(f"\n{args.rows:,} prompts, ngram {args.ngram}, num_perm {args.num_perm}, threshold {args.threshold}\n")
    print(
        "| tool | seconds | prompts/s | speed-up vs datasketch | peak RSS (MB) | precision | recall | F1 | clusters sha256 |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        ratio = f"{base['seconds'] / r['seconds']:.1f}×" if base else "—"
        print(
            f"| {r['tool']} | {r['seconds']:.2f} | {r['rows_per_s']:,.0f} | {ratio} | {r['peak_rss_mb']:.0f} "
            f"| {r['precision']:.4f} | {r['recall']:.4f} | {r['f1']:.4f} | {r['clusters_sha256']} |"
        )


if __name__ == "__main__":
    main()
