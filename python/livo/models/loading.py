"""Load the base text-to-image model from a local folder, a hub id or a built-in name, failing fast
when it is absent.

``load_base("stable-diffusion-v1-5/stable-diffusion-v1-5", torch.float16, "cuda")`` returns a
diffusers ``StableDiffusionPipeline`` (or ``pipeline_class``) in that dtype on that device. A local
folder (``save_pretrained`` layout: ``model_index.json`` + component subfolders) is loaded as is.
A folder holding only one weights variant (``*.fp16.safetensors``, as a download restricted to
half-precision files leaves it) is loaded with that variant (:mod:`livo.models.weights_variant`).
``builtin:NAME`` (or a bare ``NAME``) is a pipeline folder that an installed package ships and
declares as a ``livo.pretrained`` plug-in (``livo.plugins``): ``builtin:toyworld`` is the toy world's.
:func:`load_frozen_base` is what every stage uses: the same resolution, then every component frozen.

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
from livo.plugins import PRETRAINED, has_plugin, load_plugin

HUB_PROBE_TIMEOUT_S = 10.0
BUILTIN_PREFIX = "builtin:"
FROZEN_COMPONENTS = ("unet", "text_encoder", "vae")


def resolve_model(spec: str | os.PathLike[str]) -> str:
    """What ``from_pretrained`` takes for a model spec: ``builtin:NAME``, or a bare ``NAME`` that is
    neither a path nor a hub id (no ``/``) but an installed ``livo.pretrained`` plug-in, becomes that
    plug-in's folder; a folder or hub id stays as given."""
    text = os.fspath(spec)
    if text.startswith(BUILTIN_PREFIX):
        return os.fspath(load_plugin(PRETRAINED, text.removeprefix(BUILTIN_PREFIX))())
    if "/" not in text and not Path(text).exists() and has_plugin(PRETRAINED, text):
        return os.fspath(load_plugin(PRETRAINED, text)())
    return text


def load_frozen_base(
    spec: str | os.PathLike[str], dtype: Any = None, device: Any = None, **pipeline_kwargs: Any
) -> Any:
    """The frozen base pipeline every stage generates with: :func:`load_base` on ``spec`` (a folder, a
    hub id or ``builtin:NAME``), no safety checker (the project's judges decide what an image shows;
    a checker that blacks images out would corrupt pairs and measurements), progress bars off, and
    U-Net, text encoder and VAE in eval mode without gradients. ``dtype`` is a torch dtype, its name
    (``float16``), or ``auto``: float16 on CUDA, else float32."""
    import torch

    if isinstance(dtype, str):
        if dtype == "auto":
            dtype = torch.float16 if str(device or "cpu").startswith("cuda") else None
        elif dtype == "float32":
            dtype = None
        else:
            dtype = getattr(torch, dtype)
    kwargs = {"safety_checker": None, "requires_safety_checker": False} | pipeline_kwargs
    pipeline = load_base(spec, dtype, device, **kwargs)
    pipeline.set_progress_bar_config(disable=True)
    for name in FROZEN_COMPONENTS:
        component = getattr(pipeline, name, None)
        if component is not None:
            component.requires_grad_(False).eval()
    return pipeline


def missing_model_message(model_id: str, reason: str) -> str:
    """What to do when ``model_id`` cannot be loaded: download it, or point to a local copy."""
    return (
        f"base model {model_id!r}: {reason}. Download it on a machine with network access:\n"
        f"    hf download {model_id} --local-dir /path/to/model\n"
        f"  (older clients: huggingface-cli download {model_id} --local-dir /path/to/model)\n"
        "then pass that folder instead of the hub id (in Python load_base('/path/to/model'); in a config its "
        "model field, e.g. generation.model or model), or copy the hub cache to this machine and set HF_HOME "
        "to it. The shipped toy model needs no download: builtin:toyworld."
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
    """Load a diffusers text-to-image pipeline (default ``StableDiffusionPipeline``) from a folder, a hub
    id or ``builtin:NAME``.

    ``dtype`` (e.g. ``torch.float16``; None: float32) and ``device`` are applied to every component;
    extra keyword arguments go to ``from_pretrained`` (e.g. ``safety_checker=None``, ``variant="fp16"``).
    float32 is passed explicitly: left unset, diffusers loads the U-Net and VAE in float32 while
    transformers keeps a float16 folder's text encoder in float16, a pipeline that fails at its first
    step.
    """
    import torch

    from livo.runtime import is_verbose

    if not is_verbose():  # diffusers draws a bar while it loads a pipeline's components
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.disable_progress_bar()
    model = resolve_model(model_id_or_path)
    path = Path(model).expanduser()
    kwargs = dict(pipeline_kwargs)
    kwargs["dtype"] = torch.float32 if dtype is None else dtype
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise InputError(f"base model folder {model}: no model_index.json (not a diffusers pipeline folder)")
        index = _model_index(path)
        _check_folder(path, index)
        _add_folder_variant(path, kwargs)
        _skip_absent_optional_components(path, index, kwargs)
        try:
            pipeline = _pipeline_class(pipeline_class).from_pretrained(os.fspath(path), **kwargs)
        except (OSError, ValueError) as error:  # weights that do not fit their config, unreadable files
            raise InputError(f"base model folder {model}: cannot be loaded: {error}") from None
    else:
        _refuse_other_paths(model, path)
        offline = _offline()
        snapshot = cached_snapshot(model, cache_dir, kwargs.get("revision"))
        if offline and snapshot is not None:  # offline, the cache holds all there is
            index = _model_index(snapshot)
            _check_pipeline_kind(index, f"base model {model}")
            _add_folder_variant(snapshot, kwargs)
            _skip_absent_optional_components(snapshot, index, kwargs)
        elif offline:
            # Decided before importing diffusers, which alone takes seconds on a busy machine.
            raise ConfigError(
                missing_model_message(model, "not in the local cache and HF_HUB_OFFLINE=1 forbids downloads")
            )
        if cache_dir is not None:
            kwargs["cache_dir"] = os.fspath(cache_dir)
        pipeline = _load_from_hub(_pipeline_class(pipeline_class), model, kwargs, offline)
    check_components(pipeline, str(model))
    if device is not None:
        pipeline = pipeline.to(device)
    return pipeline


def _offline() -> bool:
    from huggingface_hub import constants as hub_constants

    return hub_constants.is_offline_mode() or _truthy(os.environ.get("HF_HUB_OFFLINE", ""))


def _refuse_other_paths(model: str, path: Path) -> None:
    """``model`` names no folder: an error when it is a path (a link to nothing, a file, a folder that
    does not exist) rather than a hub id."""
    if path.is_symlink():
        raise InputError(f"base model {model}: a symbolic link to {os.readlink(path)}, which does not exist")
    if path.exists():
        if path.suffix in (".safetensors", ".ckpt"):
            raise InputError(
                f"base model {model}: a single-file checkpoint; a diffusers pipeline folder is needed. Convert it "
                f"once: StableDiffusionPipeline.from_single_file({str(path)!r}).save_pretrained('/path/to/folder') "
                "(diffusers reads the model's config from the hub, or from config= naming a local pipeline folder)"
            )
        raise InputError(f"base model {model}: not a folder (expected a diffusers pipeline folder or a hub id)")
    if model.startswith((".", "/", "~")):
        raise InputError(f"base model folder {model}: does not exist")


def check_base(model_id_or_path: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None) -> None:
    """The checks :func:`load_base` makes before it reads any weights: a folder's ``model_index.json``,
    components, their configs and whether they fit, weight files (whole headers, every shard an index
    names, one variant), a cached hub model's family, an uncached one's presence on the hub. For a
    process that only validates (a dataset build's driver, before its workers load the model): SD
    1.5's weights are 4 GB in float32, read for nothing there."""
    model = resolve_model(model_id_or_path)
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise InputError(f"base model folder {model}: no model_index.json (not a diffusers pipeline folder)")
        from livo.models.weights_variant import folder_weights_variant

        _check_folder(path, _model_index(path))
        folder_weights_variant(path)  # as load_base without variant=: a component without weights, no single variant
        return
    _refuse_other_paths(model, path)
    snapshot = cached_snapshot(model, cache_dir, None)
    if snapshot is not None:
        _check_pipeline_kind(_model_index(snapshot), f"base model {model}")
        return
    if _offline():
        raise ConfigError(missing_model_message(model, "not in the local cache and HF_HUB_OFFLINE=1 forbids downloads"))
    _probe_hub(model)


def _probe_hub(model_id: str) -> None:
    """Asks the hub for an uncached model before anything downloads: a missing one (or no hub) is
    one error saying how to get it, within seconds."""
    from huggingface_hub import HfApi

    try:
        HfApi().model_info(model_id, timeout=HUB_PROBE_TIMEOUT_S)
    except Exception as error:  # noqa: BLE001 - any failure means the hub cannot serve the model
        raise ConfigError(
            missing_model_message(model_id, f"not cached and the hub did not answer ({type(error).__name__})")
        ) from error


def load_unet(
    source: str | os.PathLike[str], dtype: Any = None, *, cache_dir: str | os.PathLike[str] | None = None
) -> Any:
    """A U-Net to use in place of a base pipeline's: a folder holding its ``config.json``, a folder
    with a ``unet/`` in it (a pipeline, or a Diffusion-DPO run), or a hub id in the local cache
    (published fine-tunes, Diffusion-DPO's among them, are U-Net repositories). Nothing is downloaded:
    an id that is not cached is an error saying how to get it. A folder holding one weights variant's
    files only (``diffusion_pytorch_model.fp16.safetensors``) loads with that variant, as
    :func:`load_base` loads a pipeline."""
    import torch
    from diffusers import UNet2DConditionModel

    from livo.models.weights_variant import component_weights_variant

    folder = _unet_folder(str(source), cache_dir)
    try:
        return UNet2DConditionModel.from_pretrained(
            os.fspath(folder),
            torch_dtype=torch.float32 if dtype is None else dtype,
            variant=component_weights_variant(folder),
        )
    except (OSError, ValueError) as error:  # weights that do not fit their config, unreadable files
        raise InputError(f"U-Net {folder}: cannot be loaded: {error}") from None


def _unet_folder(source: str, cache_dir: str | os.PathLike[str] | None) -> Path:
    path = local_or_cached_folder(source, ("config.json", "unet/config.json"), "U-Net", cache_dir)
    if (path / "unet" / "config.json").is_file():
        return path / "unet"
    if (path / "config.json").is_file():
        return path
    raise InputError(f"U-Net {source}: holds no config.json (nor unet/config.json)")


def local_or_cached_folder(
    source: str, markers: tuple[str, ...], what: str, cache_dir: str | os.PathLike[str] | None = None
) -> Path:
    """``source`` as a folder, or, for a hub id, its snapshot in the local cache that holds one of
    ``markers`` (files in the repository). Nothing is downloaded: an id that is not cached is a
    :class:`ConfigError` naming ``what`` and the download command."""
    path = Path(source).expanduser()
    if path.exists():
        return path
    if source.startswith((".", "/", "~")):
        raise InputError(f"{what} folder {source}: does not exist")
    for marker in markers:
        cached = cached_snapshot(source, cache_dir, None, marker=marker)
        if cached is not None:
            return cached
    raise ConfigError(
        f"{what} {source!r}: not a folder and not in the local Hugging Face cache (nothing is downloaded "
        f"here). Download it on a machine with network access:\n    hf download {source} --local-dir "
        "/path/to/folder\nthen give that folder instead of the hub id"
    )


REQUIRED_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
_COMPONENT_CONFIGS = (
    "unet/config.json",
    "vae/config.json",
    "text_encoder/config.json",
    "scheduler/scheduler_config.json",
)


def _model_index(folder: Path) -> dict[str, Any]:
    """The pipeline folder's ``model_index.json`` (an empty mapping when it is not one)."""
    return _read_json(folder, "model_index.json")


def _read_json(folder: Path, relative: str) -> dict[str, Any]:
    import json

    file = folder / relative
    if not file.is_file():
        return {}
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"base model folder {folder}: {relative} cannot be read: {error}") from None
    return data if isinstance(data, dict) else {}


def _check_pipeline_kind(index: dict[str, Any], source: str) -> None:
    """LiVO's value encoder stands in for a pipeline's single CLIP text encoder in front of a U-Net,
    as in Stable Diffusion 1.x and 2.x. Another family is named as such, instead of failing on a size
    mismatch that reads like a damaged download (SDXL's first text encoder is 768 wide, its U-Net's
    cross-attention 2,048)."""
    kind = index.get("_class_name") or "the pipeline"
    supported = "as in Stable Diffusion 1.x and 2.x (StableDiffusionPipeline folders)"
    if _names_component(index, "text_encoder_2"):
        raise InputError(
            f"{source}: {kind} has two text encoders (text_encoder, text_encoder_2), as SDXL does; LiVO's "
            f"value encoder replaces a pipeline's single CLIP text encoder, {supported}"
        )
    if _names_component(index, "transformer") and not _names_component(index, "unet"):
        raise InputError(
            f"{source}: {kind} denoises with a transformer (transformer/), as SD3, Flux and PixArt do; LiVO "
            f"trains against a U-Net conditioned on a single CLIP text encoder, {supported}"
        )


def _names_component(index: dict[str, Any], name: str) -> bool:
    entry = index.get(name)
    return isinstance(entry, list) and bool(entry) and entry[0] is not None


def _check_folder(path: Path, index: dict[str, Any]) -> None:
    """Before loading: the pipeline is of a family LiVO works with (:func:`_check_pipeline_kind`),
    each component ``model_index.json`` names has its folder (diffusers' own error does not say which
    is missing), and the components' configs fit each other (see :func:`check_components`), so a
    mismatch is named instead of failing as a weight-shape error."""
    _check_pipeline_kind(index, f"base model folder {path}")
    for name in REQUIRED_COMPONENTS:
        if not _names_component(index, name):
            raise InputError(f"base model folder {path}: model_index.json has no {name!r} component")
        if not (path / name).is_dir():
            raise InputError(f"base model folder {path}: missing the {name}/ folder that model_index.json names")
    for config in _COMPONENT_CONFIGS:
        # Without its config transformers builds a text encoder of default size and fails on the
        # weights in a 40-line report that never names the missing file.
        if not (path / config).is_file():
            raise InputError(f"base model folder {path}: missing {config}")
    unet, vae = _read_json(path, "unet/config.json"), _read_json(path, "vae/config.json")
    text, tokenizer = _read_json(path, "text_encoder/config.json"), _read_json(path, "tokenizer/tokenizer_config.json")
    _check_weight_files(path)
    _check_fit(
        str(path),
        width=text.get("hidden_size"),
        cross_attention_dim=unet.get("cross_attention_dim"),
        positions=text.get("max_position_embeddings"),
        tokenizer_length=tokenizer.get("model_max_length"),
        latent_channels=vae.get("latent_channels"),
        unet_in_channels=unet.get("in_channels"),
    )


def _check_weight_files(path: Path) -> None:
    """Each component's ``.safetensors`` files have a whole header and are as long as it says (their
    tensors are not read): a copy or download cut short is named here, before a dataset build's
    workers fail on it one after another."""
    from safetensors import SafetensorError, safe_open

    for name in REQUIRED_COMPONENTS:
        for index in sorted((path / name).glob("*.index*.json")):
            _check_shards_present(path, name, index)
        for weights in sorted((path / name).glob("*.safetensors")):
            try:
                with safe_open(str(weights), "pt"):
                    pass
            except (SafetensorError, OSError) as error:
                raise InputError(
                    f"base model folder {path}: {name}/{weights.name} cannot be read ({error}); "
                    "the file is damaged or incomplete"
                ) from None


def _check_shards_present(path: Path, name: str, index: Path) -> None:
    """The shards a sharded checkpoint's index names are all there (a download stopped between them
    leaves the index and some of the shards)."""
    entries = _read_json(path, f"{name}/{index.name}").get("weight_map")
    shards = sorted(set(entries.values())) if isinstance(entries, dict) else []
    missing = [shard for shard in shards if not (path / name / str(shard)).is_file()]
    if missing:
        raise InputError(
            f"base model folder {path}: {name}/{index.name} names {len(missing)} shard(s) that are not there "
            f"({missing[0]}); the download is incomplete"
        )


def _check_fit(source: str, **sizes: Any) -> None:
    def known(*names: str) -> bool:
        return all(isinstance(sizes[n], int) for n in names)

    if known("width", "cross_attention_dim") and sizes["width"] != sizes["cross_attention_dim"]:
        raise InputError(
            f"base model {source}: text_encoder hidden_size {sizes['width']} does not match "
            f"unet cross_attention_dim {sizes['cross_attention_dim']}"
        )
    if known("tokenizer_length", "positions") and sizes["tokenizer_length"] > sizes["positions"]:
        raise InputError(
            f"base model {source}: tokenizer model_max_length {sizes['tokenizer_length']} exceeds "
            f"text_encoder max_position_embeddings {sizes['positions']}"
        )
    if known("latent_channels", "unet_in_channels") and sizes["latent_channels"] != sizes["unet_in_channels"]:
        raise InputError(
            f"base model {source}: vae latent_channels {sizes['latent_channels']} does not match "
            f"unet in_channels {sizes['unet_in_channels']}"
        )


def check_components(pipeline: Any, source: str) -> None:
    """The components must fit each other: text-encoder width = the U-Net's ``cross_attention_dim``,
    tokenizer length ≤ the text encoder's positions, VAE latent channels = the U-Net's input. A
    mismatch otherwise surfaces as a shape error deep inside the first generation (or not at all,
    for a tokenizer that is too long for only some prompts)."""
    unet, vae, text_encoder, tokenizer = (
        getattr(pipeline, name, None) for name in ("unet", "vae", "text_encoder", "tokenizer")
    )
    if unet is None or text_encoder is None or tokenizer is None or vae is None:
        return  # not a text-to-image pipeline of this shape; its own class checks it
    _check_fit(
        source,
        width=text_encoder.config.hidden_size,
        cross_attention_dim=unet.config.cross_attention_dim,
        positions=text_encoder.config.max_position_embeddings,
        tokenizer_length=tokenizer.model_max_length,
        latent_channels=vae.config.latent_channels,
        unet_in_channels=unet.config.in_channels,
    )


def _truthy(value: str) -> bool:
    return value.strip().upper() in ("1", "ON", "YES", "TRUE")


def _pipeline_class(pipeline_class: Any) -> Any:
    if pipeline_class is not None:
        return pipeline_class
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline


# Components a text-to-image pipeline runs without; downloads often leave them out (the safety
# checker is 1.2 GB of SD 1.5's files).
OPTIONAL_COMPONENTS = ("safety_checker", "feature_extractor", "image_encoder")


def _skip_absent_optional_components(folder: Path, index: dict[str, Any], kwargs: dict[str, Any]) -> None:
    """An optional component that ``model_index.json`` (``index``) names but the folder lacks is loaded
    as None (unless the caller passed one), instead of failing the whole pipeline."""
    for name in OPTIONAL_COMPONENTS:
        if _names_component(index, name) and not (folder / name).is_dir():
            kwargs.setdefault(name, None)


def _add_folder_variant(folder: Path, kwargs: dict[str, Any]) -> None:
    """The weights variant ``folder`` holds, unless the caller named one."""
    from livo.models.weights_variant import folder_weights_variant

    if "variant" not in kwargs:
        variant = folder_weights_variant(folder)
        if variant is not None:
            kwargs["variant"] = variant


def cached_snapshot(
    model_id: str,
    cache_dir: str | os.PathLike[str] | None,
    revision: str | None,
    *,
    marker: str = "model_index.json",
) -> Path | None:
    """The hub cache's snapshot folder of this model (the one holding ``marker``, a path in the
    repository), or None when it is not cached (no network access)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(
            model_id,
            marker,
            cache_dir=None if cache_dir is None else os.fspath(cache_dir),
            revision=revision,
        )
    except ValueError:  # not a valid repo id
        return None
    if not isinstance(found, str):
        return None
    snapshot = Path(found)
    for _ in Path(marker).parts:
        snapshot = snapshot.parent
    return snapshot


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
    _probe_hub(model_id)
    return pipeline_class.from_pretrained(model_id, **kwargs)
