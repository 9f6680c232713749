"""``livo models init sd15|tiny|clip-vit-l14 DIR``: a random-weight model folder (kept outside
``livo.models``, whose import loads torch, so that registering the command costs nothing).

Real Stable Diffusion weights cannot be downloaded everywhere, yet a deployment is sized by the
architecture, not by the weights: ``sd15`` writes the exact SD 1.5 architecture (U-Net, VAE, CLIP text
encoder, DDIM scheduler) with seeded random weights in the diffusers folder layout, so every stage
loads it with the same ``from_pretrained`` call as ``stable-diffusion-v1-5/stable-diffusion-v1-5``.
``tiny`` writes the test suite's model through the same code path, and ``clip-vit-l14`` the CLIP model
that judges and the CLIP score load (``CLIPModel`` + ``CLIPProcessor`` layout).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from livo.arg_types import int_at_least, seed_int

# livo.models.architectures.ARCHITECTURES, repeated: importing livo.models loads torch and diffusers,
# and every `livo` command registers this one.
PIPELINE_ARCHITECTURES = ("sd15", "tiny")
ARCHITECTURES = (*PIPELINE_ARCHITECTURES, "clip-vit-l14")
DTYPES = ("float32", "float16", "bfloat16")


def register(subparsers: Any) -> None:
    models = subparsers.add_parser(
        "models", help="model folders (random-weight SD 1.5-architecture pipelines and CLIP judges)"
    )
    actions = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    init = actions.add_parser(
        "init",
        help="write a random-weight model folder: sd15 (SD 1.5's architecture), tiny, or clip-vit-l14",
        description="Writes StableDiffusionPipeline.save_pretrained output (safetensors) with seeded random "
        "weights: sd15 is SD 1.5's exact architecture (~1.07B parameters, ~4.3 GB in float32), tiny the "
        "test suite's model. clip-vit-l14 writes CLIP ViT-L/14 (427.6M parameters) with its processor, "
        "for CLIP judges and the CLIP score. Same seed, same weights.",
    )
    init.add_argument("architecture", choices=ARCHITECTURES, help="sd15, tiny or clip-vit-l14")
    init.add_argument("output", help="pipeline folder to write")
    init.add_argument("--seed", type=seed_int, default=0, help="seed of the random weights")
    init.add_argument("--dtype", choices=DTYPES, default="float32", help="weights' dtype on disk")
    init.add_argument(
        "--image-size",
        type=int_at_least(1, 4096),  # SD 1.x/2.x draw at 512-768; a size past this is a typo
        default=None,
        help="native image size recorded in a pipeline's configs (default: 512 for sd15, 16 for tiny); "
        "weights do not change",
    )
    init.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    init.set_defaults(run=run_init, extras=("models",))


def run_init(args: argparse.Namespace) -> int:
    import os

    # The weights are made and written on the CPU; DeepSpeed, which diffusers' imports load, would
    # otherwise probe for accelerators and say so.
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    from livo.errors import InputError
    from livo.models.architectures import write_random_clip, write_random_pipeline
    from livo.user_paths import output_folder

    if args.architecture not in PIPELINE_ARCHITECTURES and args.image_size is not None:
        raise InputError(f"--image-size: {args.architecture} has a fixed input size; the flag is for sd15 and tiny")
    # The folder is replaced whole: only a model folder (a pipeline's or a text encoder's) may be.
    output_folder(
        args.output, flag="output", overwrite=args.overwrite, replaced_whole=("model_index.json", "config.json")
    )
    started = time.perf_counter()
    if args.architecture in PIPELINE_ARCHITECTURES:
        summary = write_random_pipeline(
            args.architecture, args.output, seed=args.seed, dtype=args.dtype, image_size=args.image_size
        )
    else:
        summary = write_random_clip(args.architecture, args.output, seed=args.seed, dtype=args.dtype)
    parts = ", ".join(f"{name} {count / 1e6:.1f}M" for name, count in summary["parameters"].items())
    print(
        f"wrote {args.output}: {args.architecture} with random weights (seed {args.seed}, {args.dtype}): {parts}; "
        f"{summary['bytes'] / 1e9:.2f} GB in {time.perf_counter() - started:.1f} s"
    )
    return 0
