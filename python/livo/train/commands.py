"""``livo train CONFIG``: train a value encoder (or the Diffusion-DPO baseline) with DeepSpeed.

Runs as one process without a launcher, or under ``torchrun --nproc_per_node N -m livo.train``
/ ``deepspeed --module livo.train`` for several processes (the launchers' ``--local_rank``
argument is accepted and ignored: ``LOCAL_RANK`` is read from the environment).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from livo.arg_parser import LivoArgumentParser
from livo.arg_types import positive_int, thread_count


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("train", help="train the value encoder (or the DPO baseline) with DeepSpeed")
    add_arguments(parser)
    parser.set_defaults(run=run_train, extras=("train",))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="training config (YAML); see services/train/*.yaml and docs/training.md")
    parser.add_argument(
        "--resume", action="store_true", help="continue from the latest checkpoint in OUTPUT/checkpoints"
    )
    parser.add_argument("--output", default=None, help="run folder (overrides the config's output)")
    parser.add_argument("--dataset", default=None, help="shard dataset folder (overrides the config's dataset)")
    parser.add_argument("--model", default=None, help="base model folder or hub id (overrides the config's model)")
    parser.add_argument("--max-steps", type=positive_int, default=None, help="optimizer steps (overrides max_steps)")
    parser.add_argument("--loss", choices=("livo", "dpo"), default=None, help="overrides the config's loss")
    parser.add_argument("--threads", type=thread_count, default=None, help="torch threads per process")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key, dotted for nested ones (e.g. --set eval.every=50)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs still written)")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)


def run_train(args: argparse.Namespace) -> int:
    from livo.overrides import given_flags, parse_overrides
    from livo.train.config import load_config
    from livo.train.distributed import shutdown
    from livo.train.trainer import train
    from livo.user_paths import input_file

    overrides = parse_overrides(args.set) | given_flags(
        {
            "output": args.output,
            "dataset": args.dataset,
            "model": args.model,
            "max_steps": args.max_steps,
            "loss": args.loss,
            "threads": args.threads,
            "progress": False if args.no_progress else None,
        }
    )
    input_file(args.config, flag="config")
    config = load_config(args.config, overrides)
    check_run_folder(Path(config.output), flag="--output" if args.output else "output (config)", resume=args.resume)
    try:
        result = train(config, resume=args.resume)
    finally:
        shutdown()
    if result.export is not None:
        print(f"trained {result.steps} steps in {result.train_seconds:.1f} s; exported {result.export}")
    return 0


def check_run_folder(output: Path, *, flag: str, resume: bool) -> None:
    """A run folder that holds an earlier run is continued (``--resume``), never silently written
    over: its checkpoints would mix with the new run's, and a later ``--resume`` could pick theirs."""
    from livo.errors import InputError
    from livo.user_paths import output_folder

    output_folder(output, flag=flag, overwrite=False, resumable=True)
    if resume or not output.is_dir() or not any(output.iterdir()):
        return
    raise InputError(f"{flag} {output}: holds an earlier run; pass --resume to continue it, or choose a new --output")


def main(argv: list[str] | None = None) -> int:
    """``python -m livo.train CONFIG [...]``: the ``livo train`` command as the module launchers
    (``torchrun``, ``deepspeed``) start it, with the CLI's error handling."""
    from livo.errors import run_command
    from livo.extras import require_extra
    from livo.runtime import apply_process_defaults

    apply_process_defaults()
    parser = LivoArgumentParser(
        prog="python -m livo.train",
        description="train the value encoder (or the Diffusion-DPO baseline) with DeepSpeed; the same as `livo train`",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)

    def run() -> int:
        require_extra("train", command="this command")
        return run_train(args)

    return run_command("train", run)
