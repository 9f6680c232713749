"""Benchmark for one GPU: LiVO and Diffusion-DPO trained at SD 1.5's size at 512 px in bf16, and
LiVOPipeline's cost against the base pipeline at 50 steps.

1. Trainers (``livo train``, one process, DeepSpeed ZeRO-2, gradient checkpointing, bf16): LiVO (the
   value encoder), Diffusion-DPO with LoRA and with the full U-Net. Per method: seconds per step (median
   after two warm-up steps), the GPU's peak allocated memory (the trainer's ``run_summary.json``:
   ``torch.cuda.max_memory_allocated``), and the largest micro-batch that fits (1, 2, 4, ... until a run
   fails; the failing run's last line is reported).
2. Generation at 50 steps, guidance 7.5: the base pipeline against ``LiVOPipeline`` applying a value to
   every image (the value encoder's extra forward pass is all LiVO adds), interleaved, median of
   ``--repeats`` runs each: images/s, the value encoder's share of a LiVO call, and LiVO's end-to-end
   overhead against the base (target: <= 2%).

The model is SD 1.5's exact architecture with random weights (``livo models init sd15``) unless
``--model`` names real weights; timings and memory do not depend on the weights.

    source scripts/env.sh
    python benchmarks/gpu_sd15.py --work /tmp/gpu-sd15                  # on the GPU machine
    python benchmarks/gpu_sd15.py --work /tmp/gpu-smoke --device cpu --architecture tiny --image-size 16 \\
        --precision fp32 --max-micro-batch 2 --repeats 1 --train-steps 3      # a CPU smoke run of the same code

Results are printed as a table and written to WORK/gpu_sd15.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from sd15_training_memory import make_pairs, run_method  # noqa: E402


def ensure_model(work: Path, args: argparse.Namespace) -> Path:
    if args.model:
        return Path(args.model)
    model = work / args.architecture
    if not (model / "model_index.json").exists():
        command = [sys.executable, "-m", "livo.cli", "models", "init", args.architecture, str(model)]
        subprocess.run([*command, "--dtype", "float16"], check=True, cwd=REPO)
    return model


def train_once(method: str, model: Path, pairs: Path, output: Path, micro_batch: int, args: argparse.Namespace) -> dict:
    """One run in ``args.precision`` on one GPU (the training-memory benchmark's runner)."""
    row = run_method(
        method, model, pairs, output, args.train_steps, args.timeout, 1, micro_batch, (f"precision={args.precision}",)
    )
    row["micro_batch"] = micro_batch
    if row["ran"]:
        row["peak_memory_gib"] = round(row.pop("peak_rss_mb") / 1024, 2)
    return row


def trainers(model: Path, work: Path, args: argparse.Namespace) -> list[dict]:
    """Per method: the micro-batch 1 run (s/step, peak memory), then 2, 4, ... until one fails."""
    pairs = work / f"pairs-{args.image_size}"
    if not (pairs / "manifest.json").exists():
        make_pairs(pairs, args.image_size, max(16, 2 * args.max_micro_batch))
    rows = []
    for method in args.methods.split(","):
        runs = []
        micro_batch = 1
        while micro_batch <= args.max_micro_batch:
            output = work / "runs" / f"{method}-mb{micro_batch}-{int(time.time())}"
            row = train_once(method, model, pairs, output, micro_batch, args)
            print(json.dumps(row), flush=True)
            runs.append(row)
            if not row["ran"]:
                break
            micro_batch *= 2
        fitted = [r for r in runs if r["ran"]]
        rows.append(
            {
                "method": method,
                "micro_batch_1": runs[0],
                "largest_micro_batch": fitted[-1]["micro_batch"] if fitted else 0,
                "at_largest": fitted[-1] if fitted else None,
                "first_failure": next((r for r in runs if not r["ran"]), None),
            }
        )
    return rows


def generation(model: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Base pipeline vs LiVOPipeline (a value applied to every image), interleaved."""
    import torch

    from livo.models import LiVOPipeline, ValueChoice

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.precision]
    from livo.models.loading import load_base
    from livo.models.value_encoder import ValueEncoder

    base = load_base(model, dtype, args.device)
    base.set_progress_bar_config(disable=True)
    # LiVO's value encoder starts as a copy of the text encoder: same size, same cost.
    encoder = ValueEncoder.from_text_encoder(base.text_encoder).requires_grad_(False).eval()
    livo = LiVOPipeline(base, encoder, bias_probability=1.0)  # the value on every image
    value = ValueChoice("gender-equality", "gender equality", "bias")
    prompt = "a photo of a doctor"
    kwargs = {"num_inference_steps": args.gen_steps, "guidance_scale": 7.5, "output_type": "np"}
    if args.device != "cpu":
        kwargs |= {"height": args.image_size, "width": args.image_size}

    def synchronize() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    def timed(call: Any) -> float:
        synchronize()
        started = time.perf_counter()
        call()
        synchronize()
        return time.perf_counter() - started

    def base_call() -> None:
        livo.base(
            prompt, num_images_per_prompt=args.batch, generator=torch.Generator(args.device).manual_seed(0), **kwargs
        )

    def livo_call() -> None:
        livo(
            prompt,
            num_images_per_prompt=args.batch,
            generator=torch.Generator(args.device).manual_seed(0),
            selector=lambda _: value,
            **kwargs,
        )

    encoder_seconds: list[float] = []
    forward = livo.value_encoder.forward

    def timed_forward(*a: Any, **k: Any) -> Any:
        synchronize()
        started = time.perf_counter()
        out = forward(*a, **k)
        synchronize()
        encoder_seconds.append(time.perf_counter() - started)
        return out

    base_call(), livo_call()  # warm-up (kernels, allocator)
    livo.value_encoder.forward = timed_forward  # type: ignore[method-assign]
    base_times, livo_times, shares = [], [], []
    for _ in range(args.repeats):
        base_times.append(timed(base_call))
        encoder_seconds.clear()
        seconds = timed(livo_call)
        livo_times.append(seconds)
        shares.append(sum(encoder_seconds) / seconds)
    base_s, livo_s = statistics.median(base_times), statistics.median(livo_times)
    return {
        "steps": args.gen_steps,
        "images_per_call": args.batch,
        "base_images_per_s": round(args.batch / base_s, 3),
        "livo_images_per_s": round(args.batch / livo_s, 3),
        "value_encoder_share": round(statistics.median(shares), 5),
        "livo_overhead": round(livo_s / base_s - 1, 4),
        "overhead_target": 0.02,
        "repeats": args.repeats,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", required=True)
    parser.add_argument("--model", help="a diffusers SD 1.5 folder (default: random weights written to WORK)")
    parser.add_argument("--architecture", default="sd15", choices=["sd15", "tiny"])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp16", "fp32"])
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--methods", default="livo,dpo-lora,dpo-full")
    parser.add_argument("--train-steps", type=int, default=7, help="steps per training run (two are warm-up)")
    parser.add_argument("--max-micro-batch", type=int, default=32)
    parser.add_argument("--gen-steps", type=int, default=50)
    parser.add_argument("--batch", type=int, default=4, help="images per generation call")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per training run")
    parser.add_argument("--skip", choices=["train", "generate"], help="leave one part out")
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.device == "cpu":
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model = ensure_model(work, args)
    results: dict[str, Any] = {"device": args.device, "precision": args.precision, "image_size": args.image_size}
    if args.device.startswith("cuda"):
        import torch

        results["gpu"] = torch.cuda.get_device_name(0)
    if args.skip != "train":
        results["training"] = trainers(model, work, args)
    if args.skip != "generate":
        results["generation"] = generation(model, args)
    (work / "gpu_sd15.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
