"""``LiVOPipeline``: a base text-to-image pipeline plus a value encoder and a value selector.

For each prompt the selector picks a value principle or none (see ``livo.models.values``). Images
whose prompt gets no value (or whose bias coin says "base") are conditioned exactly like the base
pipeline; the others on ``c_θ = [e_v ; E_T(prompt)]`` (see ``livo.models.conditioning``), with the
base pipeline's own unconditional embedding for classifier-free guidance. A pipeline made with
``max_values_per_prompt = k > 1`` applies up to ``k`` of the values the selector finds for a prompt
(harm first), one value token each, ``c_θ = [e_v1 … e_vk ; E_T(prompt)]``; with the default ``1``
it applies the first, as the method's reference does, and reports the others in ``selected``.
When no image of a call gets a value, the base pipeline is called unchanged, so its images are
bit-identical to calling it with the same arguments and generator.

The base pipeline can be any diffusers pipeline that has ``text_encoder`` and ``tokenizer`` and
accepts ``prompt_embeds`` / ``negative_prompt_embeds`` (``StableDiffusionPipeline`` and its
relatives). Saving writes the base pipeline's folder plus ``value_encoder/`` (transformers layout,
safetensors), which ``CLIPTextModel.from_pretrained(folder, subfolder="value_encoder")`` reads.

Coin flips for bias values come from ``value_seed`` if given (a seed, or a ``numpy.random.Generator``
whose stream a loop of calls continues), else from the state of the torch
``generator`` before the call (so one seeded generator reproduces both the noise and the choices,
and a generator reused over calls gives each call new ones; with one
generator per image, each image's coins come from its own, so an image is the same whichever other
images share its call), else from fresh entropy (not reproducible).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from livo.errors import ConfigError, InputError
from livo.models.conditioning import (
    base_conditioning,
    max_value_tokens,
    unconditional_conditioning,
    value_conditioning,
)
from livo.models.value_encoder import ValueEncoder
from livo.models.values import Selector, ValueChoice, apply_value_coins, no_value, selections_for
from livo.permissions import replace_folder

VALUE_ENCODER_FOLDER = "value_encoder"
# The pipeline's own settings, beside diffusers' model_index.json.
SETTINGS_FILE = "livo_pipeline.json"
SAVED_SETTINGS = ("bias_probability", "max_values_per_prompt")


def _as_torch_dtype(value: Any) -> torch.dtype | None:
    """A torch dtype from itself or its name ("float16"): a name passed on as it is loaded the base
    in float32 beside a float16 value encoder."""
    if value is None or isinstance(value, torch.dtype):
        return value
    named = getattr(torch, value, None) if isinstance(value, str) else None
    if not isinstance(named, torch.dtype):
        raise ConfigError(f"torch_dtype: a torch dtype or its name (float16, bfloat16, float32), got {value!r}")
    return named


def _nsfw_flags(output: Any) -> list[bool] | None:
    """The safety checker's per-image flags of a base pipeline's output (None: it had no checker)."""
    flags = getattr(output, "nsfw_content_detected", None)
    return None if flags is None else [bool(flag) for flag in flags]


def _saved_settings(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The settings a saved pipeline folder holds (none for a hub id or an older folder); a damaged
    file is an error naming it."""
    file = Path(path) / SETTINGS_FILE
    if not file.is_file():
        return {}
    try:
        data = json.loads(file.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as error:
        raise InputError(f"{file}: not readable pipeline settings ({error})") from None
    unknown = sorted(set(data) - set(SAVED_SETTINGS))
    if unknown:
        raise InputError(f"{file}: unknown settings {unknown}; known: {list(SAVED_SETTINGS)}")
    return data


def _missing_value_encoder(base: str, value_encoder_path: str | os.PathLike[str] | None) -> str | None:
    """Why no value encoder can be loaded, or None: told before the base loads (seconds at SD
    1.5's size), as nothing is downloaded: a folder, or a hub id in the local cache."""
    from livo.models.loading import cached_snapshot

    if value_encoder_path is None:
        if os.path.isdir(base):
            if not os.path.isdir(os.path.join(base, VALUE_ENCODER_FOLDER)):
                return (
                    f"base model folder {base}: has no {VALUE_ENCODER_FOLDER}/ folder; pass value_encoder_path "
                    "(the value_encoder/ folder a training run exports)"
                )
            return None
        if cached_snapshot(base, None, None) is None:
            return None  # not a cached pipeline: loading the base says what to download
        if cached_snapshot(base, None, None, marker=f"{VALUE_ENCODER_FOLDER}/config.json") is None:
            return (
                f"base model {base}: its copy in the local Hugging Face cache has no {VALUE_ENCODER_FOLDER}/ "
                "folder; pass value_encoder_path"
            )
        return None
    encoder = os.fspath(value_encoder_path)
    if os.path.isdir(encoder):
        return None
    if os.path.exists(encoder):
        return f"value encoder folder {encoder}: not a folder"
    if encoder.startswith((".", "/", "~")) or cached_snapshot(encoder, None, None, marker="config.json") is None:
        return (
            f"value encoder {encoder}: no such folder, and not a hub id in the local Hugging Face cache "
            "(nothing is downloaded)"
        )
    return None


@dataclass
class LiVOPipelineOutput:
    """``images`` as the base pipeline returned them (PIL list, array or tensor per ``output_type``),
    and per image the value applied (``None``: base model); image ``i * n + j`` is prompt ``i``."""

    images: Any
    # Per image, the first value applied (None: the base model's image).
    values: list[ValueChoice | None]
    prompts: list[str]
    # Per prompt, every value the selector found (harm first); the first max_values_per_prompt apply.
    selected: list[list[ValueChoice]] | None = None
    # Per image, every value applied to it, in the prompt's order (empty: the base model's image).
    applied: list[tuple[ValueChoice, ...]] | None = None
    # Per image, the base pipeline's safety checker's flag, as diffusers returns it (None: no checker
    # ran; a flagged image is blacked out by the checker).
    nsfw_content_detected: list[bool] | None = None


@dataclass(frozen=True)
class GenerationRequest:
    """One request of a batched call (:meth:`LiVOPipeline.generate_batch`): ``num_images`` images of
    ``prompt`` from ``seed``, with ``value`` already chosen (by a selector, or named by a user; None:
    the base model) and a negative prompt."""

    prompt: str
    seed: int
    value: ValueChoice | None = None
    num_images: int = 1
    negative_prompt: str = ""
    # Several values for the prompt (instead of ``value``), applied as one call with a selector
    # answering this list would apply them.
    values: tuple[ValueChoice, ...] = ()

    def value_list(self) -> list[ValueChoice]:
        """The request's values: ``values``, else ``[value]``, else none."""
        if self.values and self.value is not None:
            raise ConfigError(f"request for {self.prompt!r}: give value or values, not both")
        return list(self.values) if self.values else [] if self.value is None else [self.value]


def generator_state_seed(generator: torch.Generator) -> int:
    """A seed for the bias coins from a torch generator's current state, not its initial seed: a
    generator reused over calls (the diffusers pattern for a loop) gives each call new coins, as it
    gives new noise, and a freshly seeded one gives the same coins every time."""
    import hashlib

    state = generator.get_state().cpu().numpy().tobytes()
    return int.from_bytes(hashlib.sha256(state).digest()[:8], "little")


def _lora_scale(base_kwargs: dict[str, Any]) -> float | None:
    """The LoRA scale a diffusers call takes in ``cross_attention_kwargs``, if any."""
    return (base_kwargs.get("cross_attention_kwargs") or {}).get("scale")


@contextmanager
def lora_layers_scaled(model: Any, scale: float | None) -> Iterator[None]:
    """The LoRA layers of ``model`` scaled by ``scale`` inside the block (nothing to do without a
    scale or LoRA layers). LiVO encodes prompts itself, so it applies the scale that diffusers'
    ``encode_prompt`` applies to a text encoder's LoRA (the U-Net's, the base pipeline applies)."""
    if scale is None:
        yield
        return
    from diffusers.utils import scale_lora_layers, unscale_lora_layers

    scale_lora_layers(model, scale)
    try:
        yield
    finally:
        unscale_lora_layers(model, scale)


def value_rng(value_seed: int | np.random.Generator | None, generator: Any, images: int | None = None) -> Any:
    """The generator(s) of bias coin flips: ``value_seed`` (a numpy generator is used as it is, so
    calls made in turn draw one stream); else, given one torch generator per
    image (``images`` of them), one numpy generator per image seeded from it, so an image's coins,
    like its noise, do not depend on the other images of the call; else the torch generator(s)'
    states (:func:`generator_state_seed`); else fresh entropy."""
    if isinstance(value_seed, np.random.Generator):
        return value_seed
    if value_seed is not None:
        if isinstance(value_seed, (bool, np.bool_)) or not isinstance(value_seed, (int, np.integer)) or value_seed < 0:
            raise ConfigError(f"value_seed: a non-negative integer or a numpy Generator, got {value_seed!r}")
        return np.random.default_rng(value_seed)
    generators = generator if isinstance(generator, (list, tuple)) else [generator] if generator is not None else []
    if isinstance(generator, (list, tuple)) and images is not None and len(generators) == images:
        return [np.random.default_rng([generator_state_seed(g)]) for g in generators]
    if generators:
        return np.random.default_rng([generator_state_seed(g) for g in generators])
    return np.random.default_rng()


# Read through to the base pipeline by LiVOPipeline: its components and the switches that change how
# it computes, not where its weights are (the value encoder must move with them).
_BASE_COMPONENTS = frozenset(
    {"unet", "vae", "text_encoder", "tokenizer", "scheduler", "safety_checker", "feature_extractor"}
)
_BASE_ATTRIBUTES = _BASE_COMPONENTS | frozenset(
    {
        "components",
        "config",
        "dtype",
        "vae_scale_factor",
        "progress_bar",
        "set_progress_bar_config",
        "enable_attention_slicing",
        "disable_attention_slicing",
        "enable_vae_slicing",
        "disable_vae_slicing",
        "enable_vae_tiling",
        "disable_vae_tiling",
        "enable_xformers_memory_efficient_attention",
        "disable_xformers_memory_efficient_attention",
        "enable_freeu",
        "disable_freeu",
    }
)


class LiVOPipeline:
    """Value-aligned generation; see the module docstring for the contract."""

    def __init__(
        self,
        base: Any,
        value_encoder: ValueEncoder,
        selector: Selector | None = None,
        bias_probability: float = 0.5,
        max_values_per_prompt: int = 1,
    ) -> None:
        for name in ("text_encoder", "tokenizer"):
            if getattr(base, name, None) is None:
                raise ConfigError(f"base: pipeline {type(base).__name__} has no {name}")
        # e_v takes a token's place among the base's text features: of another width it failed only at
        # the first image that got a value, after a generation without one had worked.
        width = getattr(getattr(value_encoder, "config", None), "hidden_size", None)
        base_width = getattr(base.text_encoder.config, "hidden_size", None)
        if isinstance(width, int) and isinstance(base_width, int) and width != base_width:
            raise ConfigError(
                f"value_encoder: hidden_size {width} does not match the base text encoder's {base_width}; "
                "a value encoder is trained for one base model family"
            )
        limit = max_value_tokens(base.tokenizer)
        if not 1 <= max_values_per_prompt <= limit:
            raise ConfigError(
                f"max_values_per_prompt: {max_values_per_prompt}; this model's tokenizer allows 1 to {limit}"
            )
        self.base = base
        self.value_encoder = value_encoder  # not frozen here: a trainer may evaluate with its live encoder
        if not 0.0 <= bias_probability <= 1.0:
            raise ConfigError(f"bias_probability: must be in [0, 1], got {bias_probability}")
        self.selector: Selector = selector or no_value
        self.bias_probability = bias_probability
        self.max_values_per_prompt = max_values_per_prompt

    @property
    def device(self) -> torch.device:
        return self.base.device

    def to(
        self, device: Any = None, dtype: torch.dtype | None = None, *, silence_dtype_warnings: bool = False
    ) -> LiVOPipeline:
        """Move (and optionally cast) the base pipeline and the value encoder together; as in
        diffusers, ``to(torch.float16)`` casts, and ``silence_dtype_warnings`` goes to the base."""
        if isinstance(device, torch.dtype):
            if dtype is not None:
                raise ConfigError(f"to: two dtypes given ({device} and {dtype})")
            device, dtype = None, device
        moves = {key: val for key, val in (("device", device), ("dtype", dtype)) if val is not None}
        self.base.to(**moves, silence_dtype_warnings=silence_dtype_warnings)
        self.value_encoder.to(**moves)
        return self

    def __setattr__(self, name: str, value: Any) -> None:
        # pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config), as diffusers'
        # docs swap schedulers: set on this object, the base would have gone on with its own.
        if name in _BASE_COMPONENTS and "base" in self.__dict__:
            setattr(self.base, name, value)
        else:
            super().__setattr__(name, value)

    def __getattr__(self, name: str) -> Any:
        """diffusers' pipeline attributes (``unet``, ``scheduler``, ``components``, ``dtype``, ...) and
        the methods that change only how the base computes (``enable_attention_slicing``,
        ``set_progress_bar_config``, ...) read through to the base pipeline, as a diffusers user
        calls them on the pipeline in hand. Others are named with where to find them."""
        if name in _BASE_ATTRIBUTES and "base" in self.__dict__:
            return getattr(self.base, name)
        hint = ""
        if not name.startswith("__") and "base" in self.__dict__ and hasattr(self.base, name):
            hint = (
                f"; the base diffusers pipeline has it: pipe.base.{name} (what moves components between "
                "devices, such as enable_model_cpu_offload, leaves the value encoder where it is)"
            )
        raise AttributeError(f"'LiVOPipeline' object has no attribute {name!r}{hint}")

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        *,
        selector: Selector | None = None,
        torch_dtype: torch.dtype | str | None = None,
        device: Any = None,
        value_encoder_path: str | os.PathLike[str] | None = None,
        bias_probability: float | None = None,
        max_values_per_prompt: int | None = None,
        **base_kwargs: Any,
    ) -> LiVOPipeline:
        """Load the base from ``path`` (folder, hub id or ``builtin:NAME``, via ``load_base``) and the value
        encoder from ``value_encoder_path`` or ``path/value_encoder``, all in ``torch_dtype`` (None: float32,
        whatever dtype the folders were saved in). ``bias_probability`` and ``max_values_per_prompt``
        default to those :meth:`save_pretrained` wrote, else 0.5 and 1."""
        from livo.models.loading import load_base, resolve_model

        if "dtype" in base_kwargs:  # transformers' newer name for torch_dtype
            if torch_dtype is not None:
                raise ConfigError("from_pretrained: give torch_dtype or dtype, not both")
            torch_dtype = base_kwargs.pop("dtype")
        torch_dtype = _as_torch_dtype(torch_dtype)
        path = resolve_model(path)
        # Named before the base loads (seconds at SD 1.5's size): transformers' own message names the
        # base folder as missing a model file.
        missing = _missing_value_encoder(path, value_encoder_path)
        if missing is not None:
            raise InputError(missing)
        dtype = torch.float32 if torch_dtype is None else torch_dtype
        base = load_base(path, dtype, device, **base_kwargs)
        if value_encoder_path is None:
            value_encoder = ValueEncoder.from_pretrained(os.fspath(path), subfolder=VALUE_ENCODER_FOLDER, dtype=dtype)
        else:
            value_encoder = ValueEncoder.from_pretrained(os.fspath(value_encoder_path), dtype=dtype)
        if device is not None:
            value_encoder.to(device)
        saved = _saved_settings(path)
        return cls(
            base,
            value_encoder,
            selector=selector,
            bias_probability=saved.get("bias_probability", 0.5) if bias_probability is None else bias_probability,
            max_values_per_prompt=(
                saved.get("max_values_per_prompt", 1) if max_values_per_prompt is None else max_values_per_prompt
            ),
        )

    def save_pretrained(self, path: str | os.PathLike[str]) -> None:
        """Write the base pipeline, ``value_encoder/`` and the pipeline's settings
        (``livo_pipeline.json``: ``bias_probability``, ``max_values_per_prompt``) into ``path``,
        atomically: everything is written to a sibling temporary folder that replaces ``path`` only
        when complete. A folder that holds anything else (a README, checkpoints) is refused rather
        than replaced with what it held."""
        target = Path(path)
        if target.exists() and not target.is_dir():
            raise InputError(f"save_pretrained: {target} is a file, not a folder")
        if target.is_dir():
            ours = {"model_index.json", VALUE_ENCODER_FOLDER, SETTINGS_FILE, *self.base.components}
            others = sorted(entry.name for entry in target.iterdir() if entry.name not in ours)
            if others:
                raise InputError(
                    f"save_pretrained: {target} holds {', '.join(others[:5])}{' ...' if len(others) > 5 else ''}, "
                    "not part of a saved pipeline; saving replaces the whole folder, so save to a new or empty "
                    "folder, or move them"
                )
        with replace_folder(target) as staging:
            self.base.save_pretrained(staging)
            self.value_encoder.save_pretrained(staging / VALUE_ENCODER_FOLDER)
            settings = {name: getattr(self, name) for name in SAVED_SETTINGS}
            (staging / SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n")

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | Sequence[str] | None = None,
        *,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        value_seed: int | np.random.Generator | None = None,
        negative_prompt: str | Sequence[str] | None = None,
        selector: Selector | None = None,
        return_dict: bool = True,
        **base_kwargs: Any,
    ) -> LiVOPipelineOutput | tuple[Any, list[tuple[ValueChoice, ...]]]:
        """Generate ``num_images_per_prompt`` images per prompt. ``selector`` overrides the
        pipeline's for this call; other keyword arguments go to the base pipeline unchanged
        (``num_inference_steps``, ``guidance_scale``, ``height``, ``width``, ``output_type``, ...).
        With ``return_dict=False``, as in diffusers, a tuple: the images and, per image, the values
        applied (:attr:`LiVOPipelineOutput.applied`). Everything but the prompt is a keyword argument:
        diffusers' second positional parameter is ``height``, so ``pipe(prompt, 2)`` would mean two
        different things in the two pipelines."""
        for name in ("prompt_embeds", "negative_prompt_embeds", "clip_skip"):
            if name in base_kwargs:
                raise ConfigError(f"{name}: not supported by LiVOPipeline (it builds the embeddings itself)")
        if prompt is None:
            raise ConfigError("prompt: required (the selector and the value encoder read the prompt's text)")
        if not isinstance(prompt, str) and (
            not isinstance(prompt, Sequence) or not all(isinstance(p, str) for p in prompt)
        ):
            raise ConfigError(f"prompt: a string or a list of strings, got {type(prompt).__name__}")
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if not prompts:
            raise ConfigError("prompt: no prompts given")
        if isinstance(num_images_per_prompt, (bool, np.bool_)) or not isinstance(
            num_images_per_prompt, (int, np.integer)
        ):
            raise ConfigError(f"num_images_per_prompt: an integer, got {type(num_images_per_prompt).__name__}")
        num_images_per_prompt = int(num_images_per_prompt)
        negatives = self._negatives(negative_prompt, len(prompts))
        if num_images_per_prompt < 1:
            raise ConfigError(f"num_images_per_prompt: must be at least 1, got {num_images_per_prompt}")
        if not 0.0 <= self.bias_probability <= 1.0:
            raise ConfigError(f"bias_probability: must be in [0, 1], got {self.bias_probability}")
        images = len(prompts) * num_images_per_prompt
        if isinstance(generator, (list, tuple)) and len(generator) != images:
            raise ConfigError(f"generator: {len(generator)} given for {images} images; give one, or one per image")
        selected = selections_for(prompts, selector or self.selector)
        applied = apply_value_coins(
            [values[: self.max_values_per_prompt] for values in selected],
            num_images_per_prompt,
            value_rng(value_seed, generator, images),
            self.bias_probability,
        )
        firsts = [values[0] if values else None for values in applied]
        if not any(applied):
            output = self.base(
                prompt=prompts,
                num_images_per_prompt=num_images_per_prompt,
                # the base pipeline wants a list beside a list of prompts
                negative_prompt=None if negative_prompt is None else negatives,
                generator=generator,
                **base_kwargs,
            )
        else:
            embeds, negative_embeds = self.encode(
                prompts, num_images_per_prompt, applied, negatives, lora_scale=_lora_scale(base_kwargs)
            )
            output = self.base(
                prompt_embeds=embeds,
                negative_prompt_embeds=negative_embeds,
                num_images_per_prompt=1,
                generator=generator,
                **base_kwargs,
            )
        images = output.images if hasattr(output, "images") else output[0]
        if not return_dict:
            return images, applied
        return LiVOPipelineOutput(
            images=images,
            values=firsts,
            prompts=prompts,
            selected=selected,
            applied=applied,
            nsfw_content_detected=_nsfw_flags(output),
        )

    @torch.no_grad()
    def generate_batch(self, requests: Sequence[GenerationRequest], **base_kwargs: Any) -> list[LiVOPipelineOutput]:
        """Many requests in one base-pipeline call, each getting the images a call of its own gives:
        ``self(r.prompt, num_images_per_prompt=r.num_images, generator=torch.Generator(device).manual_seed(r.seed),
        selector=lambda _: r.value, negative_prompt=r.negative_prompt, **base_kwargs)`` (with
        ``r.values``: a selector answering that list). Each request's initial noise and bias coins
        come from its own seeded generator, exactly as in that call; then one U-Net batch runs for
        all of them, and a sampler that adds noise at each step (DDPM, ancestral samplers, DDIM with
        ``eta > 0``) draws each image's from its request's generator, continued from the initial
        noise (drawn image by image: the same numbers as the lone call's for a one-image request,
        and reproducible for any). (Batched float arithmetic can differ from a lone call in
        the last bits.) Keyword arguments go to the base pipeline (``num_inference_steps``,
        ``guidance_scale``, ``height``, ``width``, ``output_type``, ...)."""
        from diffusers.utils.torch_utils import randn_tensor

        for name in ("prompt_embeds", "negative_prompt_embeds", "latents", "generator", "num_images_per_prompt"):
            if name in base_kwargs:
                raise ConfigError(f"{name}: set per request or by generate_batch itself, not as an argument")
        if not requests:
            raise ConfigError("requests: none given")
        # diffusers finds a pipeline's device by walking all its modules: once per call.
        device, dtype = self.device, self.base.text_encoder.dtype
        shape = self._latent_shape(base_kwargs.get("height"), base_kwargs.get("width"))
        prompts, negatives, applied, latents = [], [], [], []
        step_generators: list[torch.Generator] = []
        for request in requests:
            if request.num_images < 1:
                raise ConfigError(f"num_images: must be at least 1, got {request.num_images}")
            values = self.checked_values(request.value_list(), request.prompt)
            generator = torch.Generator(device=device).manual_seed(request.seed)
            applied += apply_value_coins(
                [values], request.num_images, value_rng(None, generator), self.bias_probability
            )
            prompts += [request.prompt] * request.num_images
            negatives += [request.negative_prompt] * request.num_images
            latents.append(randn_tensor((request.num_images, *shape), generator=generator, device=device, dtype=dtype))
            step_generators += [generator] * request.num_images
        embeds, negative_embeds = self.encode(prompts, 1, applied, negatives, lora_scale=_lora_scale(base_kwargs))
        output = self.base(
            prompt_embeds=embeds,
            negative_prompt_embeds=negative_embeds,
            latents=torch.cat(latents),
            generator=step_generators,
            num_images_per_prompt=1,
            **base_kwargs,
        )
        images = output.images if hasattr(output, "images") else output[0]
        flags = _nsfw_flags(output)
        outputs, offset = [], 0
        for request in requests:
            end = offset + request.num_images
            outputs.append(
                LiVOPipelineOutput(
                    images=images[offset:end],
                    values=[values[0] if values else None for values in applied[offset:end]],
                    prompts=[request.prompt],
                    applied=applied[offset:end],
                    nsfw_content_detected=None if flags is None else flags[offset:end],
                )
            )
            offset = end
        return outputs

    def checked_values(self, values: Sequence[ValueChoice], prompt: str) -> list[ValueChoice]:
        """``values`` for one prompt, refused (naming them) when one repeats or there are more than
        ``max_values_per_prompt``: a value list is never cut short silently."""
        ids = [value.id for value in values]
        repeated = sorted({value_id for value_id in ids if ids.count(value_id) > 1})
        if repeated:
            raise ConfigError(f"values for {prompt!r}: {', '.join(repeated)} given more than once")
        if len(values) > self.max_values_per_prompt:
            raise ConfigError(
                f"values for {prompt!r}: {len(values)} given ({', '.join(ids)}); this pipeline applies at most "
                f"{self.max_values_per_prompt} per prompt (max_values_per_prompt)"
            )
        return list(values)

    def _latent_shape(self, height: int | None, width: int | None) -> tuple[int, int, int]:
        """``(channels, height, width)`` of one initial latent, as the base pipeline draws it: the
        U-Net's sample size for both sides unless both are given (diffusers ignores one alone)."""
        unet = self.base.unet
        scale = int(getattr(self.base, "vae_scale_factor", 1))
        if not height or not width:
            sample = unet.config.sample_size
            height, width = (sample, sample) if isinstance(sample, int) else tuple(sample)
            height, width = int(height) * scale, int(width) * scale
        return int(unet.config.in_channels), height // scale, width // scale

    @staticmethod
    def _negatives(negative_prompt: str | Sequence[str] | None, count: int) -> list[str]:
        if negative_prompt is None:
            return [""] * count
        if isinstance(negative_prompt, str):
            return [negative_prompt] * count
        if not isinstance(negative_prompt, Sequence) or not all(isinstance(n, str) for n in negative_prompt):
            raise ConfigError(f"negative_prompt: a string or a list of strings, got {type(negative_prompt).__name__}")
        if len(negative_prompt) != count:
            raise ConfigError(f"negative_prompt: {len(negative_prompt)} given for {count} prompts")
        return list(negative_prompt)

    @torch.no_grad()
    def encode(
        self,
        prompts: list[str],
        per_prompt: int,
        applied: Sequence[ValueChoice | tuple[ValueChoice, ...] | None],
        negatives: list[str] | None = None,
        lora_scale: float | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image ``prompt_embeds`` (``c_θ`` where ``applied`` has a value or a tuple of values,
        the base embedding where it has None or ``()``) and ``negative_prompt_embeds`` (default
        ``""``), each ``(len(applied), L, d)``. ``lora_scale`` scales LoRA layers loaded into the base's
        text encoder while it encodes, as diffusers' ``encode_prompt`` does with
        ``cross_attention_kwargs={"scale": ...}``."""
        if len(applied) != len(prompts) * per_prompt:
            raise ConfigError(f"applied: {len(applied)} values for {len(prompts)} prompts x {per_prompt} images")
        texts = [
            () if value is None else (value.text,) if isinstance(value, ValueChoice) else tuple(v.text for v in value)
            for value in applied
        ]
        negatives = negatives if negatives is not None else [""] * len(prompts)
        # Textual-inversion tokens ("<cat-toy>", several vectors each) are expanded as the base
        # pipeline's own encode_prompt expands them: its value-less images stay the base's.
        prompts, negatives = self._as_encoded(prompts), self._as_encoded(negatives)
        training = self.value_encoder.training
        self.value_encoder.eval()
        try:
            with lora_layers_scaled(self.base.text_encoder, lora_scale):
                embeds = self._image_embeddings(prompts, per_prompt, texts)
                negative_embeds = self._negative_embeddings(negatives, per_prompt)
        finally:
            self.value_encoder.train(training)
        return embeds, negative_embeds

    def _image_embeddings(self, prompts: list[str], per_prompt: int, texts: list[tuple[str, ...]]) -> torch.Tensor:
        """One embedding per distinct (prompt, values) of the call, then one row per image. Steered
        rows are encoded in one batch per number of values, ordered by prompt: a call whose images
        carry one value each encodes exactly the batch it always did."""
        text_encoder, tokenizer = self.base.text_encoder, self.base.tokenizer
        keys = [(index // per_prompt, values) for index, values in enumerate(texts)]
        unsteered = sorted({prompt_index for prompt_index, values in keys if not values})
        rows: dict[tuple[int, tuple[str, ...]], torch.Tensor] = {}
        if unsteered:
            encoded = base_conditioning(text_encoder, tokenizer, [prompts[i] for i in unsteered])
            rows.update({(prompt_index, ()): encoded[k] for k, prompt_index in enumerate(unsteered)})
        steered = sorted({key for key in keys if key[1]})
        for count in sorted({len(values) for _, values in steered}):
            group = [key for key in steered if len(key[1]) == count]
            value_lists: list[str] | list[list[str]] = (
                [values[0] for _, values in group] if count == 1 else [list(values) for _, values in group]
            )
            c_theta = value_conditioning(
                self.value_encoder, text_encoder, tokenizer, value_lists, [prompts[i] for i, _ in group]
            ).c_theta
            rows.update({key: c_theta[k] for k, key in enumerate(group)})
        return torch.stack([rows[key] for key in keys]).to(text_encoder.dtype)

    def _as_encoded(self, texts: list[str]) -> list[str]:
        """``texts`` as the base pipeline's text encoder reads them (textual inversion's
        ``maybe_convert_prompt``, where the base has it)."""
        convert = getattr(self.base, "maybe_convert_prompt", None)
        return texts if convert is None else [convert(text, self.base.tokenizer) for text in texts]

    def _negative_embeddings(self, negatives: list[str], per_prompt: int) -> torch.Tensor:
        text_encoder, tokenizer = self.base.text_encoder, self.base.tokenizer
        unique = {text: unconditional_conditioning(text_encoder, tokenizer, 1, text)[0] for text in set(negatives)}
        return torch.stack([unique[text] for text in negatives for _ in range(per_prompt)]).to(text_encoder.dtype)
