"""Load the base text-to-image model from a local folder or a hub id, failing fast when it is absent.

``load_base("stable-diffusion-v1-5/stable-diffusion-v1-5", torch.float16, "cuda")`` returns a
diffusers ``StableDiffusionPipeline`` (or ``pipeline_class``) in that dtype on that device. A local
folder (``save_pretrained`` layout: ``model_index.json`` + component subfolders) is loaded as is.

A hub id is first looked up in the local cache only. When it is not cached:

* in offline mode (``HF_HUB_OFFLINE=1``, this project's default) the call raises
  :class:`~livo.errors.ConfigError` at once, saying what to download and how to point to a copy;
* online, one metadata request with a short timeout checks that the hub answers before diffusers
  downloads; an unreachable hub gives the same message instead of minutes of retries.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from livo.errors import ConfigError, InputError

HUB_PROBE_TIMEOUT_S = 10.0


def missing_model_message(model_id: str, reason: str) -> str:
    """What to do when ``model_id`` cannot be loaded: download it, or point to a local copy."""
    return (
        f"base model {model_id!r}: {reason}. Download it on a machine with network access:\n"
        f"    hf download {model_id} --local-dir /path/to/model\n"
        f"  (older clients: huggingface-cli download {model_id} --local-dir /path/to/model)\n"
        "then pass that folder instead of the hub id (load_base('/path/to/model') or --base-model"
        " /path/to/model), or copy the hub cache to this machine and set HF_HOME to it."
    )


def load_base(
    model_id_or_path: str | os.PathLike[str],
    dtype: Any = None,
    device: Any = None,
    *,
    pipeline_class: Any = None,
    cache_dir: str | os.PathLike[str] | None = None,
    **pipeline_kwargs: Any,
) -> Any:
    """Load a diffusers text-to-image pipeline (default ``StableDiffusionPipeline``).

    ``dtype`` (e.g. ``torch.float16``) and ``device`` are applied to every component; extra keyword
    arguments go to ``from_pretrained`` (e.g. ``safety_checker=None``, ``variant="fp16"``).
    """
    from huggingface_hub import constants as hub_constants

    if pipeline_class is None:
        from diffusers import StableDiffusionPipeline

        pipeline_class = StableDiffusionPipeline
    model = os.fspath(model_id_or_path)
    kwargs = dict(pipeline_kwargs)
    if dtype is not None:
        kwargs["torch_dtype"] = dtype
    if cache_dir is not None:
        kwargs["cache_dir"] = os.fspath(cache_dir)

    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise InputError(f"base model folder {model}: no model_index.json (not a diffusers pipeline folder)")
        pipeline = pipeline_class.from_pretrained(os.fspath(path), **kwargs)
    elif path.exists() or model.startswith((".", "/", "~")):
        raise InputError(f"base model {model}: not a folder (expected a diffusers pipeline folder or a hub id)")
    else:
        pipeline = _load_from_hub(pipeline_class, model, kwargs, hub_constants.is_offline_mode())
    if device is not None:
        pipeline = pipeline.to(device)
    return pipeline


def _load_from_hub(pipeline_class: Any, model_id: str, kwargs: dict[str, Any], offline: bool) -> Any:
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return pipeline_class.from_pretrained(model_id, local_files_only=True, **kwargs)
    except (OSError, ValueError, LocalEntryNotFoundError) as error:
        cache_error = error
    if offline:
        raise ConfigError(
            missing_model_message(model_id, "not in the local cache and HF_HUB_OFFLINE=1 forbids downloads")
        ) from cache_error
    from huggingface_hub import HfApi

    try:
        HfApi().model_info(model_id, timeout=HUB_PROBE_TIMEOUT_S)
    except Exception as error:  # noqa: BLE001 - any failure means the hub cannot serve the model
        raise ConfigError(
            missing_model_message(model_id, f"not cached and the hub did not answer ({type(error).__name__})")
        ) from error
    return pipeline_class.from_pretrained(model_id, **kwargs)
