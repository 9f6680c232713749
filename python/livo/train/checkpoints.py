"""Checkpoints: DeepSpeed's ``save_checkpoint`` for engine, optimizer and scheduler state, plus a
small JSON file per rank with what DeepSpeed does not keep per rank: the data position and the
state of the trainer's random generators.

Layout under ``OUTPUT/checkpoints``: a ``latest`` file (DeepSpeed's name and format) and one
``step<N>`` folder per checkpoint, each with ``trainer_state_rank<r>.json``. Only the newest ``keep``
checkpoints stay. ``latest`` names a checkpoint only once every rank has written all of its part:
a rank that dies while saving (its node lost, its launcher ended) leaves the previous checkpoint as
the one a resumed run loads, never a half-written one.
Random-generator states are stored as base64 of their byte tensors, so no pickle is involved in
the trainer's own state (DeepSpeed's engine files are its own format).
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from livo.errors import ConfigError, InputError
from livo.permissions import write_atomic

if TYPE_CHECKING:
    import torch


def _encode_state(state: torch.Tensor) -> str:
    return base64.b64encode(state.cpu().numpy().tobytes()).decode()


def _decode_state(text: str) -> torch.Tensor:
    import torch

    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)


def step_tag(step: int) -> str:
    return f"step{step}"


def save(
    engine: Any,
    folder: Path,
    step: int,
    rank: int,
    data_state: dict[str, Any],
    generator: torch.Generator,
    keep: int,
    config: dict[str, Any],
    elapsed_s: float = 0.0,
) -> None:
    """Save a checkpoint of ``step`` (every rank must call this: ZeRO shards live on each rank).
    ``elapsed_s``, the run's training seconds so far, lets a resumed run's ``elapsed_s`` go on
    counting rather than restart at 0."""
    import torch

    from livo.train.distributed import barrier

    tag = step_tag(step)
    engine.save_checkpoint(
        str(folder), tag=tag, client_state={"livo_step": step, "livo_config": config}, save_latest=False
    )
    state = {
        "step": step,
        "rank": rank,
        "data": data_state,
        "generator": _encode_state(generator.get_state()),
        "torch_rng": _encode_state(torch.get_rng_state()),
        "config": config,
        "elapsed_s": elapsed_s,
    }
    write_atomic(folder / tag / f"trainer_state_rank{rank}.json", (json.dumps(state, indent=1) + "\n").encode())
    barrier()  # every rank's part is on disk
    if rank == 0:
        write_atomic(folder / "latest", tag.encode())
        _prune(folder, keep)


def _prune(folder: Path, keep: int) -> None:
    tags = sorted(
        (p for p in folder.glob("step*") if p.is_dir() and p.name[4:].isdigit()), key=lambda p: int(p.name[4:])
    )
    for old in tags[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def latest_tag(folder: Path) -> str | None:
    latest = folder / "latest"
    return latest.read_text().strip() if latest.is_file() else None


# Settings that decide which module is trained and how its weights are stored: a checkpoint holds
# that module's state, so a run resumed with another value cannot load it.
MODULE_SETTINGS = ("loss", "dpo_target", "lora_rank", "lora_alpha", "freeze_token_embeddings", "precision")
# Settings the checkpoint's optimizer state carries: DeepSpeed restores the optimizer's parameter
# groups (rate, betas, epsilon, weight decay), the learning-rate schedule's base rate and the
# gradient clipping, so a run resumed with other values would silently keep the checkpoint's.
OPTIMIZER_SETTINGS = ("learning_rate", "adam_betas", "weight_decay", "adam_eps", "grad_clip")


def load(
    engine: Any, folder: Path, rank: int, generator: torch.Generator, config: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any], float] | None:
    """Load the latest checkpoint into ``engine`` and ``generator``; returns (step, data position,
    training seconds so far), or ``None`` when ``folder`` holds no checkpoint. With ``config`` (this run's), a checkpoint written
    with other :data:`MODULE_SETTINGS` or :data:`OPTIMIZER_SETTINGS` is refused naming them, before
    DeepSpeed tries to load it."""
    import torch

    tag = latest_tag(folder)
    if tag is None:
        return None
    state_file = folder / tag / f"trainer_state_rank{rank}.json"
    if not state_file.is_file():
        raise InputError(f"checkpoint {folder / tag}: no {state_file.name}; was it written by a run with fewer ranks?")
    try:
        state = json.loads(state_file.read_text())
        if not isinstance(state, dict) or not {"step", "data", "generator", "torch_rng"} <= state.keys():
            raise ValueError("not a trainer state: step, data, generator or torch_rng missing")
    except (ValueError, UnicodeDecodeError) as error:
        raise InputError(f"checkpoint {folder / tag}: {state_file.name} is damaged ({error})") from None
    saved = state.get("config")
    if config is not None and saved is not None:
        for names, why in (
            (MODULE_SETTINGS, "these decide what is trained"),
            (OPTIMIZER_SETTINGS, "the optimizer and its learning-rate schedule resume with the checkpoint's values"),
        ):
            changed = [name for name in names if name in saved and saved[name] != config.get(name)]
            if changed:
                differences = ", ".join(f"{name}={saved[name]!r} (this run: {config.get(name)!r})" for name in changed)
                raise ConfigError(
                    f"checkpoint {folder / tag} was written with {differences}; {why}, so resume with the "
                    "checkpoint's settings or start a new --output"
                )
    path, client_state = engine.load_checkpoint(
        str(folder), tag=tag, load_optimizer_states=True, load_lr_scheduler_states=True
    )
    if path is None:
        raise InputError(f"checkpoint {folder / tag}: DeepSpeed could not load it")
    generator.set_state(_decode_state(state["generator"]))
    torch.set_rng_state(_decode_state(state["torch_rng"]))
    return int(client_state.get("livo_step", state["step"])), state["data"], float(state.get("elapsed_s", 0.0))
