"""Benchmark: LiVO against Diffusion-DPO (LoRA and full U-Net) at Stable Diffusion 1.5's size, on CPU.

The method's claim is a *lightweight* value encoder trained against a frozen model instead of
fine-tuning the diffusion model. This measures it where it matters: SD 1.5's exact architecture
(``livo models init sd15``, random weights), each method trained by ``livo train`` (DeepSpeed ZeRO-2,
gloo, gradient checkpointing, micro-batch 1 or ``--micro-batch``) on the same pairs at the same resolution, one after the
other, each in its own process. Per method: trainable parameters, Adam state bytes (two fp32 moments
per trainable parameter), peak RSS of the rank (the trainer's ``run_summary.json``), seconds per step
(median over the steps after the first two), and whether it ran at all.

    source scripts/env.sh
    python benchmarks/sd15_training_memory.py --work /tmp/sd15-bench --image-size 256 --steps 7 \
        --ranks 1,2 --micro-batch 1,2

The first run writes the model (2.1 GB, ~30 s) and 16 pairs (toy-world pairs resized to the image
size); later runs reuse them.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
METHODS = {
    "livo": ["services/train/sd15_livo.yaml"],
    "dpo-lora": ["services/train/sd15_dpo.yaml"],
    "dpo-full": ["services/train/sd15_dpo.yaml", "--set", "dpo_target=full"],
}


def make_pairs(folder: Path, image_size: int, count: int) -> None:
    """``count`` toy-world pairs with both images resized (nearest) to ``image_size``."""
    from PIL import Image

    from livo.data.schema import PAIR_SCHEMA, pair_table
    from livo.data.shards import ShardConfig, ShardWriter
    from livo.toyworld.pairs import PairsConfig, pair_records

    def resized(png: bytes) -> bytes:
        with Image.open(io.BytesIO(png)) as image:
            out = io.BytesIO()
            image.convert("RGB").resize((image_size, image_size), Image.NEAREST).save(out, format="PNG")
            return out.getvalue()

    records = []
    for record in pair_records(PairsConfig(output=str(folder), bias_per_subject=2, harm_per_prompt=1, seed=0)):
        record = dict(record)
        record["aligned_image"] = resized(record["aligned_image"])
        record["violating_image"] = resized(record["violating_image"])
        records.append(record)
        if len(records) == count:
            break
    # Small row groups: the unit dealt to ranks, so that every rank of a multi-rank run gets pairs.
    with ShardWriter(folder, ShardConfig(splits={"train": 1.0}, row_group_bytes=2048), schema=PAIR_SCHEMA) as w:
        w.write(pair_table(records))


def run_method(
    name: str,
    model: Path,
    pairs: Path,
    output: Path,
    steps: int,
    timeout: int,
    ranks: int = 1,
    micro_batch: int = 1,
    settings: tuple[str, ...] = (),
) -> dict:
    """One training run of ``name`` by ``livo train`` (torchrun for several ranks); ``settings`` are more
    ``--set`` values. Peak memory is the trainer's (peak RSS on CPU, max allocated on a GPU)."""
    from livo.train.distributed import new_world_environment

    launcher = [sys.executable, "-m", "livo.train"]
    if ranks > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks), "-m", "livo.train"]
    command = [
        *launcher,
        *METHODS[name],
        "--model",
        str(model),
        "--dataset",
        str(pairs),
        "--output",
        str(output),
        "--max-steps",
        str(steps),
        "--threads",
        str(max(1, 2 // ranks)),
        "--no-progress",
        "--set",
        f"micro_batch_size={micro_batch}",
        "--set",
        "checkpoint_every=0",
        "--set",
        "eval.every=0",
        "--set",
        "tensorboard=false",
        "--set",
        "gradient_checkpointing=true",
        "--set",
        "precision=auto",  # the configs' published fp16 needs a GPU; auto is fp32 on a CPU, as measured
        *[item for setting in settings for item in ("--set", setting)],
    ]
    started = time.perf_counter()
    try:
        env = new_world_environment(os.environ)  # a process group of its own, whatever the caller ran
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"method": name, "ran": False, "why": f"timed out after {timeout} s"}
    wall = time.perf_counter() - started
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        # torchrun ends with its own summary: the rank's error line is the last one naming an error
        errors = [line for line in lines if "error:" in line] or lines[-1:] or [""]
        why = "killed (out of memory?)" if done.returncode in (-9, 137) else errors[-1][:600]
        return {"method": name, "ran": False, "why": f"exit {done.returncode}: {why}", "wall_s": round(wall, 1)}
    summary = json.loads((output / "run_summary.json").read_text())
    elapsed = [json.loads(line)["elapsed_s"] for line in (output / "metrics.jsonl").read_text().splitlines()]
    per_step = [b - a for a, b in zip(elapsed, elapsed[1:])][1:]  # after the first two steps
    trainable = summary["trainable_parameters"]
    return {
        "method": name,
        "ran": True,
        "trainable_parameters": trainable,
        "adam_state_bytes": 8 * trainable,
        "setup_peak_rss_mb": summary["setup_peak_memory_mb"],
        "peak_rss_mb": summary["train_peak_memory_mb"],
        "seconds_per_step": round(statistics.median(per_step), 2) if per_step else None,
        "steps_timed": len(per_step),
        "wall_s": round(wall, 1),
    }


def counts(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", required=True, help="folder for the model, the pairs and the runs")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=7, help="steps per method (the first two are not timed)")
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--methods", default="livo,dpo-lora,dpo-full")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds per method")
    parser.add_argument(
        "--ranks", type=counts, default=[1], help="data-parallel ranks, e.g. 1,2 (torchrun; peak RSS is rank 0's)"
    )
    parser.add_argument("--micro-batch", type=counts, default=[1], help="pairs per rank per step, e.g. 1,2")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = Path(args.work)
    model, pairs = work / "sd15", work / f"pairs-{args.image_size}"
    if not (model / "model_index.json").exists():
        subprocess.run(
            [sys.executable, "-m", "livo.cli", "models", "init", "sd15", str(model), "--dtype", "float16"], check=True
        )
    if not (pairs / "manifest.json").exists():
        make_pairs(pairs, args.image_size, args.pairs)
    started = time.perf_counter()
    rows = []
    for ranks in args.ranks:
        for micro_batch in args.micro_batch:
            for name in args.methods.split(","):
                output = work / "runs" / f"{name}-{args.image_size}-{ranks}r-mb{micro_batch}-{int(time.time())}"
                row = run_method(name, model, pairs, output, args.steps, args.timeout, ranks, micro_batch)
                row |= {"image_size": args.image_size, "ranks": ranks, "micro_batch": micro_batch}
                print(json.dumps(row), flush=True)
                rows.append(row)
    print(
        f"\nSD 1.5 architecture, {args.image_size} px, gradient checkpointing, ZeRO-2; "
        f"{(time.perf_counter() - started) / 60:.1f} min\n"
    )
    print("| ranks | micro-batch | method | trainable params | Adam state | peak RSS | s/step | vs LiVO (peak RSS) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        head = f"| {r['ranks']} | {r['micro_batch']} | {r['method']} |"
        if not r["ran"]:
            print(f"{head} | | | | did not run: {r['why']} |")
            continue
        livo = next(
            (
                x
                for x in rows
                if x["method"] == "livo"
                and x["ran"]
                and (x["ranks"], x["micro_batch"]) == (r["ranks"], r["micro_batch"])
            ),
            None,
        )
        ratio = f"{r['peak_rss_mb'] / livo['peak_rss_mb']:.2f}x" if livo else ""
        print(
            f"{head} {r['trainable_parameters'] / 1e6:.1f}M | {r['adam_state_bytes'] / 2**30:.2f} GiB | "
            f"{r['peak_rss_mb'] / 1024:.1f} GiB | {r['seconds_per_step']} | {ratio} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
