"""Test builders: complete Stable-Diffusion-shaped models built from configs, without downloading
anything (defined in ``livo.models.architectures``, which ``livo models init`` also uses).

``tiny_components(seed)`` returns the keyword arguments of ``StableDiffusionPipeline`` (UNet,
AutoencoderKL, CLIPTextModel, a word-level tokenizer, a scheduler) at a size that runs a denoising
step in milliseconds on a CPU, so every code path that serves SD 1.5 can be tested here::

    from diffusers import StableDiffusionPipeline
    pipe = StableDiffusionPipeline(**tiny_components(seed=0))

The sizes live in :class:`TinyModelConfig`.
``sd15_configs()`` gives the published SD 1.5 architecture as config dicts (shape tests, and a
random-weight model of the real size for GPU benchmarks via ``sd15_sized_components``).
"""

from __future__ import annotations

from livo.models.architectures import (
    TinyModelConfig,
    sd15_configs,
    sd15_sized_components,
    sd15_text_encoder_config,
    tiny_components,
)

__all__ = [
    "TinyModelConfig",
    "sd15_configs",
    "sd15_sized_components",
    "sd15_text_encoder_config",
    "tiny_components",
]
