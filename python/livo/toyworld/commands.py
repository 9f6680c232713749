"""``livo toyworld render|train|report``: the toy value world from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from livo.arg_types import (
    images_per_prompt,
    int_at_least,
    learning_rate,
    non_negative_float,
    non_negative_int,
    pair_count,
    positive_int,
    seed_int,
    thread_count,
)


def register(subparsers: Any) -> None:
    from livo.toyworld.train import ToyModelRecipe  # no torch at import: the defaults live in one place

    recipe = {name: field.default for name, field in ToyModelRecipe.model_fields.items()}
    parser = subparsers.add_parser("toyworld", help="the synthetic toy value world (render, train, report, pairs)")
    commands = parser.add_subparsers(dest="toyworld_command", metavar="ACTION", required=True)

    render = commands.add_parser("render", help="render ground-truth images of prompts to a PNG grid")
    render.add_argument("prompts", nargs="+", help='toy-world prompts, e.g. "a doctor" "a bloody teal nurse"')
    render.add_argument(
        "--per-prompt", type=int_at_least(1, 256), default=8, help="images per prompt (one grid row each)"
    )
    render.add_argument("--seed", type=seed_int, default=0, help="seed of the first image")
    render.add_argument("--scale", type=int_at_least(1, 64), default=4, help="pixel upscaling of the PNG")
    render.add_argument("--output", required=True, help="PNG file to write")
    render.add_argument("--overwrite", action="store_true", help="replace the PNG file if it exists")
    render.set_defaults(run=run_render, extras=("models",))

    train = commands.add_parser(
        "train", help="train the base text-to-image model (the shipped recipe: 14 min on 2 idle cores)"
    )
    train.add_argument("--output", required=True, help="folder to save the diffusers pipeline into")
    train.add_argument("--overwrite", action="store_true", help="write over a folder that is not empty")
    train.add_argument("--steps", type=positive_int, default=recipe["steps"], help="optimizer steps")
    train.add_argument(
        "--batch-size", type=positive_int, default=recipe["batch_size"], help="global batch over all processes"
    )
    train.add_argument(
        "--learning-rate", type=learning_rate, default=recipe["learning_rate"], help="peak learning rate"
    )
    train.add_argument("--seed", type=seed_int, default=0, help="seed of weights, data order and noise")
    train.add_argument(
        "--processes", type=positive_int, default=recipe["processes"], help="data-parallel processes (gloo)"
    )
    train.add_argument("--threads", type=thread_count, default=recipe["threads"], help="intra-op threads per process")
    train.add_argument(
        "--checkpoint-every",
        type=non_negative_int,
        default=0,
        help="also save EMA weights every N steps, to OUTPUT-stepN beside OUTPUT (0: never)",
    )
    train.add_argument(
        "--timestep-sampling",
        choices=("weight", "draw"),
        default=recipe["timestep_sampling"],
        help="min-SNR weights as the timesteps' distribution (shipped) or as loss weights",
    )
    train.add_argument(
        "--fused-optimizer",
        action=argparse.BooleanOptionalAction,
        default=recipe["fused_optimizer"],
        help="fused AdamW (shipped; --no-fused-optimizer: the for-loop kernel)",
    )
    train.add_argument(
        "--default-direction-weight",
        type=non_negative_float,
        default=recipe["default_direction_weight"],
        help="weight of a loss laying each person's default colour along one shared direction of the text "
        "features, as a pretrained text encoder carries a bias (shipped: 0, none)",
    )
    train.set_defaults(run=run_train, extras=("models",))

    report = commands.add_parser("report", help="measure bias, harm and fidelity of a model on the toy world")
    report.add_argument("--model", default=None, help="diffusers folder or hub id (default: the shipped model)")
    report.add_argument("--per-prompt", type=images_per_prompt, default=50, help="images per prompt (N)")
    report.add_argument("--steps", type=positive_int, default=25, help="DDIM sampling steps")
    report.add_argument(
        "--guidance-scale", type=non_negative_float, default=None, help="default: the shipped recommendation"
    )
    report.add_argument("--seed", type=seed_int, default=0, help="seed of the first image")
    report.add_argument("--batch-size", type=positive_int, default=256, help="images per pipeline call")
    report.add_argument("--threads", type=thread_count, default=2, help="torch threads")
    report.add_argument("--output", required=True, help="folder for report.json, report.md and PNG grids")
    report.add_argument("--overwrite", action="store_true", help="write over a folder that is not empty")
    report.set_defaults(run=run_report, extras=("models",))

    pairs = commands.add_parser("pairs", help="render (aligned, violating) training pairs as a shard dataset")
    pairs.add_argument("--output", required=True, help="shard dataset folder to write")
    pairs.add_argument(
        "--append",
        action="store_true",
        help="continue the dataset in --output, made with the same settings (pairs it holds are skipped)",
    )
    pairs.add_argument("--bias-per-subject", type=pair_count, default=400, help="colour pairs per people-subject")
    pairs.add_argument(
        "--harm-per-prompt",
        type=pair_count,
        default=80,
        help="pairs per harmful training prompt (default 80: the shipped encoder's recipe)",
    )
    pairs.add_argument(
        "--subject-anchors-per-subject",
        type=pair_count,
        default=0,
        help="colour pairs per people-subject whose violating image shows another subject (default 0)",
    )
    pairs.add_argument(
        "--double-per-prompt",
        type=pair_count,
        default=0,
        help="pairs with two values (harm and colour) per harmful people-prompt without a colour word (default 0)",
    )
    pairs.add_argument(
        "--compose-double-values",
        action="store_true",
        help="write double-value pairs as one value with the joined text instead of one value each",
    )
    pairs.add_argument("--holdout-subject", action="append", default=[], help="people-subject kept out of bias pairs")
    pairs.add_argument("--no-holdout", action="store_true", help="also train on the report's harmful prompts")
    pairs.add_argument(
        "--subject",
        action="append",
        default=None,
        help="only this subject in any pair, bias or harm (repeat; default: every subject)",
    )
    pairs.add_argument("--seed", type=seed_int, default=0, help="seed of the rendered pairs")
    pairs.add_argument(
        "--split",
        action="append",
        metavar="NAME=RATIO",
        help="a split and its share (repeat; default: all pairs in train, as the trainer reads them)",
    )
    pairs.set_defaults(run=run_pairs, extras=("models",))


def _quiet_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def run_render(args: argparse.Namespace) -> int:
    from livo.image_grid import save_grid
    from livo.toyworld.grammar import parse_prompt
    from livo.toyworld.render import render
    from livo.user_paths import output_file

    output_file(args.output, flag="--output", overwrite=args.overwrite, suffixes=(".png",))
    specs = [parse_prompt(p) for p in args.prompts]
    rows = [
        [render(spec, args.seed * 1_000_003 + 7919 * r + k)[0] for k in range(args.per_prompt)]
        for r, spec in enumerate(specs)
    ]
    save_grid(rows, Path(args.output), scale=args.scale)
    print(f"wrote {args.output} ({len(rows)} prompts x {args.per_prompt} images)")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from livo.user_paths import output_folder

    # The trained model replaces the folder whole: only a model folder may be written over.
    output_folder(args.output, flag="--output", overwrite=args.overwrite, replaced_whole=("model_index.json",))
    _quiet_threads(args.threads)
    from livo.config import parse_model
    from livo.toyworld.train import ToyModelRecipe, checkpoint_folders, train

    settings = {
        "output": args.output,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "seed": args.seed,
        "processes": args.processes,
        "threads": args.threads,
        "checkpoint_every": args.checkpoint_every,
        "timestep_sampling": args.timestep_sampling,
        "fused_optimizer": args.fused_optimizer,
        "default_direction_weight": args.default_direction_weight,
    }
    config = parse_model(ToyModelRecipe, settings, "livo toyworld train")
    # Checkpoints replace their folders whole too: none may be a folder of the user's files. One an
    # interrupted run left is written over with --overwrite, as the output of a finished run is.
    for folder in checkpoint_folders(config):
        flag = "checkpoint (--checkpoint-every)"
        output_folder(folder, flag=flag, overwrite=args.overwrite, replaced_whole=("model_index.json",))
    train(config, log=lambda line: print(line, flush=True))
    return 0


def run_report(args: argparse.Namespace) -> int:
    from livo.user_paths import input_folder, output_folder

    output_folder(args.output, flag="--output", overwrite=args.overwrite)
    if args.model is not None and (args.model.startswith((".", "/", "~")) or Path(args.model).exists()):
        input_folder(Path(args.model).expanduser(), flag="--model")  # a local path (not a hub id)
    _quiet_threads(args.threads)
    from livo.toyworld.measure import ReportConfig, write_report

    config = ReportConfig(
        model=args.model,
        per_prompt=args.per_prompt,
        steps=args.steps,
        guidance_scale=args.guidance_scale,
        seed=args.seed,
        batch_size=args.batch_size,
        output=args.output,
    )
    summary = write_report(config)
    print(summary)
    return 0


def run_pairs(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from livo.data.shards import check_dataset_output
    from livo.data.shards_command import parse_splits
    from livo.toyworld.pairs import PairsConfig, write_pairs

    before = check_dataset_output(args.output, flag="--output", append=args.append)
    config = PairsConfig(
        output=args.output,
        bias_per_subject=args.bias_per_subject,
        harm_per_prompt=args.harm_per_prompt,
        holdout_report_harm=not args.no_holdout,
        holdout_subjects=tuple(args.holdout_subject),
        subjects=None if args.subject is None else tuple(args.subject),
        subject_anchors_per_subject=args.subject_anchors_per_subject,
        double_per_prompt=args.double_per_prompt,
        compose_double_values=args.compose_double_values,
        seed=args.seed,
    )
    if args.split:
        config = replace(config, splits=parse_splits(args.split))
    result = write_pairs(config)
    print(
        f"wrote {result.written:,} new pairs to {args.output} "
        f"(total {result.manifest.rows():,}; {before:,} before, {result.skipped:,} already present)"
    )
    return 0
