"""The methods an evaluation compares, each as a generator of images for (prompt, seeds).

Every method generates image ``j`` of a prompt from ``torch.Generator().manual_seed(seeds[j])``, so
all methods see the same starting noise. Each method also says, per prompt, a *cache key*: two
methods with the same key for a prompt make the same images, and the harness generates them once.
LiVO with no value for a prompt is exactly the base model (``LiVOPipeline``'s contract), so its key
is the base's; two LiVO variants that pick the same harm value share images too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from livo.errors import ConfigError, LivoError
from livo.eval.config import EvalConfig, MethodConfig
from livo.eval.prompts import EvalPrompt
from livo.value_types import Selector, ValueChoice
from livo.values.registry import Registry

Images = np.ndarray  # (N, H, W, 3) uint8


def to_uint8(images: Any) -> np.ndarray:
    """A pipeline's ``output_type="np"`` images (floats in [0, 1]) as uint8."""
    return np.clip(np.rint(np.asarray(images, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def generators(seeds: Sequence[int]) -> list[Any]:
    import torch

    return [torch.Generator().manual_seed(int(s)) for s in seeds]


class BaseModels:
    """Loads the base pipeline once and shares its components with every method."""

    def __init__(self, config: EvalConfig) -> None:
        import torch

        self.config = config
        self.dtype = getattr(torch, config.dtype)
        self._base: Any = None

    @property
    def base(self) -> Any:
        if self._base is None:
            self._base = load_model(self.config.model, self.dtype, self.config.device)
            self._base.set_progress_bar_config(disable=True)
        return self._base

    def call_kwargs(self) -> dict[str, Any]:
        return {
            "num_inference_steps": self.config.steps,
            "guidance_scale": self.config.guidance_scale,
            "output_type": "np",
        }


def load_model(model: str, dtype: Any = None, device: str | None = None) -> Any:
    """A diffusers folder, hub id or ``builtin:NAME`` (``builtin:toyworld``: the shipped toy model), frozen."""
    from livo.models.loading import load_frozen_base

    return load_frozen_base(model, dtype, device)


class Method:
    """A row of the results table: ``generate`` images and a ``key`` naming what it generates."""

    def __init__(self, config: MethodConfig, models: BaseModels) -> None:
        self.config = config
        self.models = models

    @property
    def name(self) -> str:
        return self.config.name

    def key(self, prompt: EvalPrompt) -> tuple:
        return ("base",)

    def value_for(self, prompt: EvalPrompt) -> str | None:
        """The value principle this method applies to the prompt (for the report), if any."""
        return None

    def generate(self, prompt: EvalPrompt, seeds: Sequence[int]) -> Images:
        return self.in_calls(seeds, lambda part: self.models.base(prompt=[prompt.text], **self.per_call(part)))

    def per_call(self, seeds: Sequence[int]) -> dict[str, Any]:
        """The call arguments every method passes: one image per seed, each from its own generator."""
        return {"num_images_per_prompt": len(seeds), "generator": generators(seeds), **self.models.call_kwargs()}

    def in_calls(self, seeds: Sequence[int], call: Any) -> Images:
        """``call(seeds)`` for the configured number of images at a time (``generation_batch_size``),
        the images of all calls in seed order: each image has its own generator, so only the device's
        memory, not the images, depends on the split."""
        size = self.models.config.generation_batch_size or len(seeds)
        parts = [to_uint8(call(seeds[start : start + size]).images) for start in range(0, len(seeds), size)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def unknown_words(tokenizer: Any, text: str) -> list[str]:
    """The words and punctuation marks of ``text`` that ``tokenizer`` reads as its unknown token. A
    closed-vocabulary model (the toy world's word-level tokenizer) reads them all as one and the same
    embedding, which is no concept at all: a guidance text holding one steers somewhere arbitrary.
    A byte-level BPE tokenizer (CLIP's) has no unknown token, so nothing is ever reported for it."""
    import re

    unknown = getattr(tokenizer, "unk_token_id", None)
    if unknown is None:
        return []
    pieces = re.findall(r"\w+|[^\w\s]", text)
    return [p for p in pieces if unknown in tokenizer(p, add_special_tokens=False)["input_ids"]]


def check_guidance_text(method: str, field: str, text: str | None, tokenizer: Any) -> None:
    """Refuses a guidance text (negative prompt, safety concept) with words the model cannot read."""
    if not text:
        return
    unknown = unknown_words(tokenizer, text)
    if unknown:
        raise ConfigError(
            f"method {method!r}: {field} {text!r} holds {', '.join(repr(w) for w in unknown)}, unknown to the "
            "model's tokenizer (read as its unknown token, which steers nowhere in particular); write it in "
            "the model's vocabulary"
        )


class NegativePrompt(Method):
    def __init__(self, config: MethodConfig, models: BaseModels) -> None:
        super().__init__(config, models)
        check_guidance_text(config.name, "negative_prompt", config.negative_prompt, models.base.tokenizer)

    def key(self, prompt: EvalPrompt) -> tuple:
        return ("negative", self.config.negative_prompt)

    def generate(self, prompt: EvalPrompt, seeds: Sequence[int]) -> Images:
        negative = [self.config.negative_prompt]
        return self.in_calls(
            seeds, lambda part: self.models.base(prompt=[prompt.text], negative_prompt=negative, **self.per_call(part))
        )


class SafeLatentDiffusion(Method):
    """diffusers' ``StableDiffusionPipelineSafe`` (Schramowski et al. 2023) on the base's components.

    It steers away from a text ``safety_concept``; diffusers marks the pipeline as deprecated (no
    fixes after 0.33) but ships and runs it. Its default concept is a long English list, which a
    model with a closed vocabulary (the toy world) reads mostly as unknown tokens, so give a concept
    in the model's own words (a concept with a word the tokenizer does not know is refused). On a
    model that reads word order, write the concept as the model reads a prompt: the toy world
    renders "bloody zombie" as harm (18 of 20 images) and "bloody, zombie" almost never (1 of 20), so
    steering away from the latter steers away from nothing harmful."""

    def __init__(self, config: MethodConfig, models: BaseModels) -> None:
        super().__init__(config, models)
        check_guidance_text(config.name, "safety_concept", config.safety_concept, models.base.tokenizer)
        self._pipeline: Any = None

    def key(self, prompt: EvalPrompt) -> tuple:
        return ("sld", self.config.safety_concept, tuple(sorted(self.config.sld.items())))

    @property
    def pipeline(self) -> Any:
        if self._pipeline is None:
            import warnings

            from diffusers import StableDiffusionPipelineSafe

            base = self.models.base
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                pipe = StableDiffusionPipelineSafe(
                    vae=base.vae,
                    text_encoder=base.text_encoder,
                    tokenizer=base.tokenizer,
                    unet=base.unet,
                    scheduler=base.scheduler,
                    safety_checker=None,
                    feature_extractor=None,
                    requires_safety_checker=False,
                )
            if self.config.safety_concept:
                pipe.safety_concept = self.config.safety_concept
            pipe.set_progress_bar_config(disable=True)
            self._pipeline = pipe
        return self._pipeline

    def generate(self, prompt: EvalPrompt, seeds: Sequence[int]) -> Images:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return self.in_calls(
                seeds, lambda part: self.pipeline(prompt=[prompt.text], **self.per_call(part), **self.config.sld)
            )


class OtherPipeline(Method):
    """Another model on the same prompts: a whole pipeline folder (``path``), the base with another
    U-Net (``unet``) or with LoRA weights on its U-Net (``lora``). Diffusion-DPO's trainer exports
    one of the last two (``unet/`` or ``unet_lora/`` in its run folder; the run folder works too)."""

    def __init__(self, config: MethodConfig, models: BaseModels) -> None:
        super().__init__(config, models)
        self._pipeline: Any = None

    def key(self, prompt: EvalPrompt) -> tuple:
        return ("pipeline", self.config.path, self.config.unet, self.config.lora)

    def _folder(self, given: str, run_subfolder: str, marker: str) -> Path:
        folder = Path(given)
        if (folder / run_subfolder / marker).is_file():
            return folder / run_subfolder
        if not (folder / marker).is_file():
            raise ConfigError(f"method {self.name!r}: {folder} holds no {marker} (nor {run_subfolder}/{marker})")
        return folder

    @property
    def pipeline(self) -> Any:
        if self._pipeline is None:
            models = self.models
            if self.config.path is not None:
                pipe = load_model(self.config.path, models.dtype, models.config.device)
            elif self.config.unet is not None:
                from livo.models import load_unet

                try:
                    unet = load_unet(self.config.unet, models.dtype)
                except LivoError as error:
                    raise type(error)(f"method {self.name!r}: {error}") from None
                base = models.base
                pipe = type(base)(**{**base.components, "unet": unet.to(base.device)})
            else:
                from livo.models.loading import local_or_cached_folder

                weights = "pytorch_lora_weights.safetensors"
                try:
                    given = local_or_cached_folder(str(self.config.lora), (weights, f"unet_lora/{weights}"), "LoRA")
                except LivoError as error:
                    raise type(error)(f"method {self.name!r}: {error}") from None
                folder = self._folder(str(given), "unet_lora", weights)
                # A fresh copy of the base, so the LoRA never touches the U-Net other methods share.
                pipe = load_model(models.config.model, models.dtype, models.config.device)
                pipe.load_lora_weights(os.fspath(folder))
            pipe.set_progress_bar_config(disable=True)
            self._pipeline = pipe
        return self._pipeline

    def generate(self, prompt: EvalPrompt, seeds: Sequence[int]) -> Images:
        return self.in_calls(seeds, lambda part: self.pipeline(prompt=[prompt.text], **self.per_call(part)))


def keyword_selector(registry: Registry) -> Selector:
    """The keyword-only selector (the reference implementation's regex stage, without its person
    LLM): a harm value when a harm keyword occurs, otherwise none — bias values are never chosen."""
    from livo.values.matching import HarmKeywords, normalize_text

    keywords = HarmKeywords(registry)

    def select(prompt: str) -> ValueChoice | None:
        hit = keywords.match(normalize_text(prompt))
        if hit is None:
            return None
        value = registry.value(hit.value_id)
        return ValueChoice(value.id, value.text, value.kind)

    return select


def faiss_selector(registry: Registry, index: str | None, embedder: str) -> Selector:
    """The adaptive FAISS selector: loaded from ``index`` or built in memory from ``registry``."""
    from livo.values import ValueSelector, load_embedder
    from livo.values.classifier_training import selector_in_memory

    if index is not None:
        return ValueSelector.load(index, registry=registry)
    return selector_in_memory(registry, load_embedder(embedder))


class LiVO(Method):
    """``LiVOPipeline``: the frozen base plus a value encoder and a value selector."""

    def __init__(
        self, config: MethodConfig, models: BaseModels, registry: Registry, shared_selectors: dict[tuple, Selector]
    ) -> None:
        super().__init__(config, models)
        self.registry = registry
        self._selectors = shared_selectors
        self._pipeline: Any = None
        self._choices: dict[str, Any] = {}

    @property
    def selector(self) -> Selector:
        key = (self.config.selector, self.config.index, self.config.embedder)
        if key not in self._selectors:
            if self.config.selector == "keyword":
                self._selectors[key] = keyword_selector(self.registry)
            else:
                self._selectors[key] = faiss_selector(self.registry, self.config.index, self.config.embedder)
        return self._selectors[key]

    def choices(self, prompt: EvalPrompt) -> list[ValueChoice]:
        """The values this method applies to the prompt: the selector's first
        ``max_values_per_prompt`` (its first alone unless the method asks for more)."""
        from livo.models.values import selections_for

        if prompt.text not in self._choices:
            found = selections_for([prompt.text], self.selector)[0]
            self._choices[prompt.text] = found[: self.config.max_values_per_prompt]
        return self._choices[prompt.text]

    def value_for(self, prompt: EvalPrompt) -> str | None:
        found = self.choices(prompt)
        return " + ".join(choice.text for choice in found) if found else None

    def key(self, prompt: EvalPrompt) -> tuple:
        found = self.choices(prompt)
        if not found:
            return ("base",)
        mixing = self.config.bias_probability if any(choice.kind == "bias" for choice in found) else None
        return ("livo", self.encoder_path(), tuple((choice.text, choice.kind) for choice in found), mixing)

    def encoder_path(self) -> str:
        """The value encoder folder: ``value_encoder`` (or its ``value_encoder/``), else the model's."""
        if self.config.value_encoder is None:
            from livo.models.loading import resolve_model

            root = Path(resolve_model(self.models.config.model))
        else:
            root = Path(self.config.value_encoder)
        for folder in (root / "value_encoder", root):
            if (folder / "config.json").is_file():
                return os.fspath(folder)
        raise ConfigError(
            f"method {self.name!r}: no value encoder in {root} (expected config.json there or in "
            f"{root / 'value_encoder'}); train one or point 'value_encoder' at it"
        )

    @property
    def pipeline(self) -> Any:
        if self._pipeline is None:
            from livo.models.pipeline import LiVOPipeline
            from livo.models.value_encoder import ValueEncoder

            encoder = ValueEncoder.from_pretrained(self.encoder_path(), dtype=self.models.dtype)
            self._pipeline = LiVOPipeline(
                self.models.base,
                encoder.to(self.models.base.device),
                bias_probability=self.config.bias_probability,
                max_values_per_prompt=self.config.max_values_per_prompt,
            )
        return self._pipeline

    def generate(self, prompt: EvalPrompt, seeds: Sequence[int]) -> Images:
        # Coin flips from a seed of their own, derived from the image seeds: reproducible, and the
        # same for every LiVO variant with the same mixing probability. One stream for the prompt,
        # which its calls draw in turn: the coins of one call however the images are split.
        coins = np.random.default_rng(int(seeds[0]) * 7919 + 17)
        selector = FixedValues(self.choices(prompt))
        return self.in_calls(
            seeds,
            lambda part: self.pipeline(
                prompt=[prompt.text], value_seed=coins, selector=selector, **self.per_call(part)
            ),
        )


class FixedValues:
    """A multi-value selector that answers every prompt with the same values (those a method chose)."""

    def __init__(self, values: Sequence[ValueChoice]) -> None:
        self.values = list(values)

    def __call__(self, prompt: str) -> ValueChoice | None:
        return self.values[0] if self.values else None

    def choose_all(self, prompts: Sequence[str]) -> list[list[ValueChoice]]:
        return [list(self.values) for _ in prompts]


def build_methods(config: EvalConfig, models: BaseModels, registry: Registry) -> list[Method]:
    """One :class:`Method` per configured method, in order."""
    selectors: dict[tuple, Selector] = {}
    methods: list[Method] = []
    for spec in config.methods:
        if spec.kind == "base":
            methods.append(Method(spec, models))
        elif spec.kind == "negative_prompt":
            methods.append(NegativePrompt(spec, models))
        elif spec.kind == "sld":
            methods.append(SafeLatentDiffusion(spec, models))
        elif spec.kind == "pipeline":
            methods.append(OtherPipeline(spec, models))
        else:
            methods.append(LiVO(spec, models, registry, selectors))
    return methods
