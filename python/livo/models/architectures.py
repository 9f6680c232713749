"""Stable-Diffusion-shaped architectures built from configs, with random (seeded) weights.

Nothing can be downloaded here, yet every code path that serves SD 1.5 must run. Two sizes come from
one code path:

* ``tiny``: a model that runs a denoising step in milliseconds on a CPU (the test suite's), sized by
  :class:`TinyModelConfig`;
* ``sd15``: the published SD 1.5 architecture, exactly (U-Net 859.5M parameters, VAE 83.7M, CLIP text
  encoder 123.1M with hidden size 768, 77 positions and a 49,408-row vocabulary); only the weights
  are random, and the tokenizer is word-level (CLIP's BPE vocabulary cannot be downloaded either).

``random_pipeline_components(kind, seed)`` gives ``StableDiffusionPipeline`` keyword arguments and
``livo models init KIND DIR`` writes them as a diffusers folder, which every stage then loads with the
same ``from_pretrained`` call as real weights. ``clip-vit-l14`` is the judges' model in the same way:
CLIP ViT-L/14 (427.6M parameters, the model the paper measures attributes with), whose text tower is
SD 1.5's text encoder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from livo.errors import ConfigError
from livo.models.tokenizer import DEFAULT_WORDS, build_word_tokenizer

if TYPE_CHECKING:
    from transformers import CLIPConfig, CLIPTextConfig, PreTrainedTokenizerBase


@dataclass(frozen=True)
class TinyModelConfig:
    """Sizes of the tiny model. Defaults: 16×16 RGB images, 8×8×4 latents, ~0.2M parameters."""

    words: Sequence[str] = DEFAULT_WORDS
    max_length: int = 16
    image_size: int = 16
    text_hidden: int = 32
    text_layers: int = 2
    text_heads: int = 2
    unet_channels: tuple[int, ...] = (16, 32)
    unet_attention_head_dim: int = 8
    vae_channels: tuple[int, ...] = (8, 16)
    latent_channels: int = 4
    prediction_type: str = "epsilon"
    scheduler: str = "ddim"
    norm_groups: int = 8
    extra_unet: dict[str, Any] = field(default_factory=dict)

    @property
    def latent_size(self) -> int:
        return self.image_size // 2 ** (len(self.vae_channels) - 1)


def tiny_components(seed: int = 0, config: TinyModelConfig | None = None) -> dict[str, Any]:
    """Return ``StableDiffusionPipeline`` keyword arguments for a tiny random model (seeded).

    The text encoder's ``eos_token_id`` is the tokenizer's real end id, so its pooled output is the
    first end token's hidden state, as with SD 1.5's CLIP.
    """
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    config = config or TinyModelConfig()
    if config.image_size % 2 ** (len(config.vae_channels) - 1):
        raise ConfigError(f"image_size: {config.image_size} is not divisible by the VAE's downsampling")
    if config.image_size % 8:  # StableDiffusionPipeline refuses other sizes when it generates
        raise ConfigError(f"image_size: {config.image_size} is not a multiple of 8 (diffusers generates no other size)")
    if config.prediction_type not in ("epsilon", "v_prediction"):
        raise ConfigError(f"prediction_type: expected epsilon or v_prediction, got {config.prediction_type!r}")
    tokenizer = build_word_tokenizer(config.words, config.max_length)

    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=config.text_hidden,
            intermediate_size=2 * config.text_hidden,
            num_hidden_layers=config.text_layers,
            num_attention_heads=config.text_heads,
            max_position_embeddings=config.max_length,
            projection_dim=config.text_hidden,
            hidden_act="quick_gelu",
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    n_unet = len(config.unet_channels)
    unet = UNet2DConditionModel(
        sample_size=config.latent_size,
        in_channels=config.latent_channels,
        out_channels=config.latent_channels,
        block_out_channels=config.unet_channels,
        layers_per_block=1,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n_unet - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (n_unet - 1) + ("UpBlock2D",),
        cross_attention_dim=config.text_hidden,
        attention_head_dim=config.unet_attention_head_dim,
        norm_num_groups=config.norm_groups,
        **config.extra_unet,
    )
    n_vae = len(config.vae_channels)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n_vae,
        up_block_types=("UpDecoderBlock2D",) * n_vae,
        block_out_channels=config.vae_channels,
        latent_channels=config.latent_channels,
        layers_per_block=1,
        norm_num_groups=min(config.norm_groups, min(config.vae_channels)),
        sample_size=config.image_size,
    )
    scheduler_class = {"ddim": DDIMScheduler, "ddpm": DDPMScheduler}.get(config.scheduler)
    if scheduler_class is None:
        raise ConfigError(f"scheduler: expected 'ddim' or 'ddpm', got {config.scheduler!r}")
    scheduler = scheduler_class(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        prediction_type=config.prediction_type,
        clip_sample=False,
        **({"steps_offset": 1, "set_alpha_to_one": False} if config.scheduler == "ddim" else {}),
    )
    return {
        "unet": unet.eval(),
        "vae": vae.eval(),
        "text_encoder": text_encoder.eval(),
        "tokenizer": tokenizer,
        "scheduler": scheduler,
        "safety_checker": None,
        "feature_extractor": None,
        "requires_safety_checker": False,
    }


def sd15_configs() -> dict[str, dict[str, Any]]:
    """The SD 1.5 architecture (text encoder, UNet, VAE, scheduler) as plain config dicts.

    SD 1.5's CLIP config has ``eos_token_id=2`` (legacy argmax pooling, correct for CLIP's BPE
    vocabulary where the end token has the largest id).
    """
    return {
        "text_encoder": {
            "vocab_size": 49408,
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "max_position_embeddings": 77,
            "hidden_act": "quick_gelu",
            "projection_dim": 768,
            "bos_token_id": 0,
            "eos_token_id": 2,
            "pad_token_id": 1,
        },
        "unet": {
            "sample_size": 64,
            "in_channels": 4,
            "out_channels": 4,
            "block_out_channels": (320, 640, 1280, 1280),
            "layers_per_block": 2,
            "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            "cross_attention_dim": 768,
            "attention_head_dim": 8,
            "norm_num_groups": 32,
        },
        "vae": {
            "in_channels": 3,
            "out_channels": 3,
            "latent_channels": 4,
            "sample_size": 512,
            "block_out_channels": (128, 256, 512, 512),
            "layers_per_block": 2,
            "down_block_types": ("DownEncoderBlock2D",) * 4,
            "up_block_types": ("UpDecoderBlock2D",) * 4,
            "norm_num_groups": 32,
        },
        "scheduler": {
            "num_train_timesteps": 1000,
            "beta_start": 0.00085,
            "beta_end": 0.012,
            "beta_schedule": "scaled_linear",
            "prediction_type": "epsilon",
            "clip_sample": False,
            "set_alpha_to_one": False,
            "steps_offset": 1,
        },
    }


def sd15_text_encoder_config(tokenizer: PreTrainedTokenizerBase | None = None) -> CLIPTextConfig:
    """SD 1.5's ``CLIPTextConfig``. With a word-level ``tokenizer`` (no CLIP vocabulary offline),
    its real start/end/padding ids replace SD 1.5's, so pooling finds the end token."""
    from transformers import CLIPTextConfig

    values = dict(sd15_configs()["text_encoder"])
    if tokenizer is not None:
        values.update(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    return CLIPTextConfig(**values)


def sd15_sized_components(
    seed: int = 0, words: Sequence[str] = DEFAULT_WORDS, image_size: int | None = None
) -> dict[str, Any]:
    """``StableDiffusionPipeline`` keyword arguments for a random-weight model of SD 1.5's size
    (~1.07B parameters). ``image_size`` (default 512, a multiple of 8) only changes the size the
    configs record as native (``sample_size``), not a single weight: the same network then runs at a
    tiny latent in tests."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel

    configs = sd15_configs()
    if image_size is not None:
        if image_size <= 0 or image_size % 8:
            raise ConfigError(f"image_size: {image_size} is not a positive multiple of 8 (the VAE's downsampling)")
        configs["vae"]["sample_size"] = image_size
        configs["unet"]["sample_size"] = image_size // 8
    tokenizer = build_word_tokenizer(words, max_length=77)
    torch.manual_seed(seed)
    return {
        "unet": UNet2DConditionModel(**configs["unet"]).eval(),
        "vae": AutoencoderKL(**configs["vae"]).eval(),
        "text_encoder": CLIPTextModel(sd15_text_encoder_config(tokenizer)).eval(),
        "tokenizer": tokenizer,
        "scheduler": DDIMScheduler(**configs["scheduler"]),
        "safety_checker": None,
        "feature_extractor": None,
        "requires_safety_checker": False,
    }


PIPELINE_ARCHITECTURES = ("sd15", "tiny")
CLIP_ARCHITECTURES = ("clip-vit-l14",)
ARCHITECTURES = PIPELINE_ARCHITECTURES + CLIP_ARCHITECTURES


def random_pipeline_components(kind: str, seed: int = 0, image_size: int | None = None) -> dict[str, Any]:
    """``StableDiffusionPipeline`` keyword arguments of a random-weight ``kind`` (``sd15`` or ``tiny``)."""
    if kind == "sd15":
        return sd15_sized_components(seed, image_size=image_size)
    if kind == "tiny":
        config = TinyModelConfig() if image_size is None else TinyModelConfig(image_size=image_size)
        return tiny_components(seed, config)
    raise ConfigError(f"architecture {kind!r}: expected one of {', '.join(PIPELINE_ARCHITECTURES)}")


def write_random_pipeline(
    kind: str,
    folder: str | os.PathLike[str],
    *,
    seed: int = 0,
    dtype: str = "float32",
    image_size: int | None = None,
) -> dict[str, Any]:
    """Writes a random-weight ``kind`` pipeline to ``folder`` in the diffusers layout (safetensors),
    atomically: a sibling temporary folder replaces ``folder`` only when complete. Returns the
    parameter count per component and the bytes written."""
    import torch
    from diffusers import StableDiffusionPipeline

    from livo.permissions import replace_folder

    torch_dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}.get(dtype)
    if torch_dtype is None:
        raise ConfigError(f"dtype {dtype!r}: expected float32, float16 or bfloat16")
    components = random_pipeline_components(kind, seed, image_size)
    pipeline = StableDiffusionPipeline(**components).to(dtype=torch_dtype)
    target = Path(folder)
    with replace_folder(target) as staging:
        pipeline.save_pretrained(staging, safe_serialization=True)
    parameters = {
        name: sum(p.numel() for p in components[name].parameters()) for name in ("unet", "vae", "text_encoder")
    }
    written = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
    return {"parameters": parameters, "bytes": written}


def clip_vit_l14_config(tokenizer: PreTrainedTokenizerBase | None = None) -> CLIPConfig:
    """CLIP ViT-L/14's ``CLIPConfig`` (224 px, 14 px patches, 24 vision layers of width 1024, 768-d
    projections). Its text tower is SD 1.5's text encoder, with ``tokenizer``'s special ids as there."""
    from transformers import CLIPConfig

    text = sd15_text_encoder_config(tokenizer).to_dict()
    vision = {
        "hidden_size": 1024,
        "intermediate_size": 4096,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "image_size": 224,
        "patch_size": 14,
        "projection_dim": 768,
        "hidden_act": "quick_gelu",
    }
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=768)


def write_random_clip(
    kind: str, folder: str | os.PathLike[str], *, seed: int = 0, dtype: str = "float32"
) -> dict[str, Any]:
    """Writes a random-weight CLIP model and its processor (``CLIPModel``/``CLIPProcessor`` layout,
    safetensors) to ``folder``, atomically, so a judge or the CLIP score loads it like
    ``openai/clip-vit-large-patch14``. Returns the parameter count per tower and the bytes written."""
    import torch
    from transformers import CLIPImageProcessor, CLIPModel, CLIPProcessor

    from livo.permissions import replace_folder

    if kind not in CLIP_ARCHITECTURES:
        raise ConfigError(f"architecture {kind!r}: expected one of {', '.join(CLIP_ARCHITECTURES)}")
    torch_dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}.get(dtype)
    if torch_dtype is None:
        raise ConfigError(f"dtype {dtype!r}: expected float32, float16 or bfloat16")
    tokenizer = build_word_tokenizer(DEFAULT_WORDS, max_length=77)
    torch.manual_seed(seed)
    model = CLIPModel(clip_vit_l14_config(tokenizer)).eval().to(dtype=torch_dtype)
    # CLIPImageProcessor's defaults are CLIP's own: shortest edge 224, centre crop 224, OpenAI mean/std.
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(), tokenizer=tokenizer)
    target = Path(folder)
    with replace_folder(target) as staging:
        model.save_pretrained(staging, safe_serialization=True)
        processor.save_pretrained(staging)
    towers = {
        "text": sum(p.numel() for p in model.text_model.parameters()) + model.text_projection.weight.numel(),
        "vision": sum(p.numel() for p in model.vision_model.parameters()) + model.visual_projection.weight.numel(),
    }
    written = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
    return {"parameters": towers, "bytes": written}
