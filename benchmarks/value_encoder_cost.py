"""What the value encoder adds to a generation, against the base pipeline in the same run.

LiVO's promise is a plug-in that costs almost nothing at inference: one extra text-encoder pass per
steered prompt and one more cross-attention token. This command times, on the same model and inputs:

* ``base``: the untouched diffusers pipeline (what a user would otherwise run);
* ``livo``: ``LiVOPipeline`` with a harm value applied to every image;
* ``value encoder``: the value encoder's own forward pass for the same prompts, timed alone.

and reports the value encoder's share of the LiVO generation, the extra conditioning work (LiVO's
embeddings minus the base pipeline's ``encode_prompt``) as a share, and the end-to-end overhead over
the base (target ≤ 2%). The end-to-end figure is a difference of two noisy timings; on a shared CPU
its noise (several %) exceeds the effect, so the component timings are the precise measure.
Medians (and minima) over ``--repeats`` interleaved calls after one warm-up call.

    .venv/bin/python benchmarks/value_encoder_cost.py                      # tiny model, CPU
    .venv/bin/python benchmarks/value_encoder_cost.py --model sd15 --device cuda --dtype float16
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

PROMPTS = ["a photo of a doctor", "a bloody zombie in the street", "a portrait of a nurse", "a dog in the park"]
VALUE = "bloody content is considered inappropriate"


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(runs: dict[str, Callable[[], object]], device: str, repeats: int) -> dict[str, list[float]]:
    """Time each run ``repeats`` times, interleaved (a, b, a, b, ...) so that drift in the machine's
    load affects all of them alike; one warm-up call each first."""
    for run in runs.values():
        run()
    sync(device)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            sync(device)
            times[name].append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        choices=["tiny", "sd15"],
        default="tiny",
        help="tiny: livo.testing.tiny_components; sd15: random weights of SD 1.5's size",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32")
    parser.add_argument("--steps", type=int, default=25, help="denoising steps (DDIM)")
    parser.add_argument("--images-per-prompt", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=None, help="pixels (default: the model's own)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()

    import torch
    from diffusers import StableDiffusionPipeline

    from livo.models import LiVOPipeline, ValueChoice, ValueEncoder
    from livo.testing import sd15_sized_components, tiny_components

    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    components = tiny_components(seed=0) if args.model == "tiny" else sd15_sized_components(seed=0)
    base = StableDiffusionPipeline(**components).to(args.device, dtype)
    base.set_progress_bar_config(disable=True)
    value_encoder = ValueEncoder.from_text_encoder(base.text_encoder)
    livo = LiVOPipeline(base, value_encoder, selector=lambda prompt: ValueChoice("no-blood", VALUE, "harm"))
    size = args.image_size or base.unet.config.sample_size * base.vae_scale_factor
    call = {"num_inference_steps": args.steps, "height": size, "width": size, "output_type": "latent"}
    n = args.images_per_prompt

    def run_base() -> None:
        base(PROMPTS, num_images_per_prompt=n, generator=torch.Generator(args.device).manual_seed(0), **call)

    def run_livo() -> None:
        livo(PROMPTS, num_images_per_prompt=n, generator=torch.Generator(args.device).manual_seed(0), **call)

    def run_value_encoder() -> None:
        with torch.no_grad():
            value_encoder.encode_values(base.tokenizer, [VALUE] * len(PROMPTS), PROMPTS)

    applied = [ValueChoice("no-blood", VALUE, "harm")] * (len(PROMPTS) * n)

    def run_livo_conditioning() -> None:
        livo.encode(PROMPTS, n, applied)

    def run_base_conditioning() -> None:
        with torch.no_grad():
            base.encode_prompt(PROMPTS, base.device, n, True)

    times = timed({"base": run_base, "livo": run_livo}, args.device, args.repeats)
    base_s, livo_s = statistics.median(times["base"]), statistics.median(times["livo"])
    parts = timed(
        {"encoder": run_value_encoder, "livo_cond": run_livo_conditioning, "base_cond": run_base_conditioning},
        args.device,
        args.repeats * 4,
    )
    encoder_s = statistics.median(parts["encoder"])
    extra_s = statistics.median(parts["livo_cond"]) - statistics.median(parts["base_cond"])
    result = {
        "model": args.model,
        "device": args.device,
        "dtype": args.dtype,
        "steps": args.steps,
        "prompts": len(PROMPTS),
        "images": len(PROMPTS) * n,
        "image_size": size,
        "threads": args.threads,
        "base_s": round(base_s, 4),
        "livo_s": round(livo_s, 4),
        "value_encoder_s": round(encoder_s, 5),
        "value_encoder_share": round(encoder_s / livo_s, 4),
        "extra_conditioning_s": round(extra_s, 5),
        "extra_conditioning_share": round(extra_s / livo_s, 4),
        "livo_overhead_median": round(livo_s / base_s - 1, 4),
        "livo_overhead_min": round(min(times["livo"]) / min(times["base"]) - 1, 4),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.model} on {args.device} ({args.dtype}), {result['images']} images of {size}px, {args.steps} steps")
    print(f"  base pipeline             {base_s * 1000:10.1f} ms (median)")
    print(
        f"  LiVO pipeline             {livo_s * 1000:10.1f} ms (median)   end-to-end overhead"
        f" {result['livo_overhead_median']:+.2%} (median) {result['livo_overhead_min']:+.2%} (min)"
    )
    print(
        f"  value encoder alone       {encoder_s * 1000:10.2f} ms   share of LiVO generation"
        f" {result['value_encoder_share']:.2%}"
    )
    print(
        f"  extra conditioning work   {extra_s * 1000:10.2f} ms   share of LiVO generation"
        f" {result['extra_conditioning_share']:.2%}  (LiVO embeddings minus base encode_prompt)"
    )


if __name__ == "__main__":
    main()
