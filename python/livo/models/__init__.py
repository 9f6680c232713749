"""LiVO's model core: value encoder, conditioning, denoising errors, pipeline, model loading.

* ``ValueEncoder`` (``value_encoder``): a ``CLIPTextModel`` copy of the base text encoder whose
  pooled output on ``value + ", " + prompt`` is the value token ``e_v``.
* ``conditioning``: ``c_ref``, ``c_θ = [e_v ; c_ref]`` (``[e_v1 … e_vk ; c_ref]`` for several
  values) and the unconditional embedding, one length convention for training and inference.
* ``denoising``: ``pair_errors`` — per-sample errors of (aligned, violating) pairs with shared noise
  and timestep, for epsilon and v-prediction; the losses themselves live in ``livo.losses``.
* ``LiVOPipeline`` (``pipeline``) with ``ValueChoice`` selections (``values``).
* ``load_base`` / ``load_frozen_base`` (``loading``): SD 1.5 or any diffusers pipeline from a folder,
  a hub id or a built-in name (``builtin:toyworld``), failing fast when absent.

Test builders (a seeded tiny SD-shaped model, SD 1.5-sized random models) are in ``livo.testing``.
"""

from livo.models.conditioning import (
    ValueConditioning,
    base_conditioning,
    encode_text,
    max_value_tokens,
    reference_conditioning,
    sequence_length,
    unconditional_conditioning,
    value_conditioning,
    with_value_token,
    with_value_tokens,
)
from livo.models.denoising import (
    PairErrors,
    freeze_for_value_training,
    pair_errors,
    per_sample_error,
    prediction_target,
    sample_noise_and_timesteps,
)
from livo.models.loading import load_base, load_frozen_base, load_unet, missing_model_message, resolve_model
from livo.models.pipeline import GenerationRequest, LiVOPipeline, LiVOPipelineOutput
from livo.models.tokenizer import build_word_tokenizer, check_vocabulary
from livo.models.value_encoder import ValueEncoder, value_texts
from livo.models.values import (
    BatchSelector,
    Selector,
    ValueChoice,
    ValueKind,
    apply_value_coins,
    values_per_image,
)

__all__ = [
    "BatchSelector",
    "GenerationRequest",
    "LiVOPipeline",
    "LiVOPipelineOutput",
    "PairErrors",
    "Selector",
    "ValueChoice",
    "ValueConditioning",
    "ValueEncoder",
    "ValueKind",
    "apply_value_coins",
    "base_conditioning",
    "build_word_tokenizer",
    "check_vocabulary",
    "encode_text",
    "freeze_for_value_training",
    "load_base",
    "load_frozen_base",
    "load_unet",
    "max_value_tokens",
    "missing_model_message",
    "pair_errors",
    "per_sample_error",
    "prediction_target",
    "reference_conditioning",
    "resolve_model",
    "sample_noise_and_timesteps",
    "sequence_length",
    "unconditional_conditioning",
    "value_conditioning",
    "value_texts",
    "values_per_image",
    "with_value_token",
    "with_value_tokens",
]
