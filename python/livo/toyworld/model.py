"""The toy world's text-to-image model, built only from stock diffusers/transformers parts.

Everything here produces components that ``StableDiffusionPipeline.from_pretrained(folder)`` loads
with no LiVO import, exactly like SD 1.5:

- tokenizer: a word-level ``tokenizers`` model over the grammar's vocabulary, wrapped in
  ``PreTrainedTokenizerFast`` (``[BOS] words [EOS]``, padded with ``[PAD]`` to ``MAX_LENGTH``);
- text encoder: a small ``CLIPTextModel`` whose config carries the real ``[EOS]`` id (with
  ``eos_token_id == 2`` transformers falls back to legacy argmax pooling);
- U-Net: ``UNet2DConditionModel`` in pixel space (3 channels, 16×16), cross-attention at 4×4 only;
- "VAE": an ``AutoencoderKL`` whose weights are set by hand so that it passes pixels through
  (relative error below 1e-4, see :func:`pass_through_vae`), giving the usual
  ``encode(x).latent_dist`` / ``decode`` / ``config.scaling_factor`` interface at no cost;
- schedulers: DDPM (1000 steps, ``squaredcos_cap_v2``, epsilon) for training; the pipeline ships a
  DDIM scheduler with the same betas for sampling.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from livo.permissions import replace_folder
from livo.toyworld.grammar import MAX_LENGTH, vocabulary
from livo.toyworld.render import IMAGE_SIZE

TEXT_HIDDEN = 64
# Constant channel magnitude of the pass-through VAE: larger is more exact in float32, but K² must
# stay below float16's maximum (65504) for half-precision loading.
PASS_THROUGH_K = 100.0
SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_schedule": "squaredcos_cap_v2",
    "prediction_type": "epsilon",
    # Off as in SD 1.5: StableDiffusionPipeline would force it off anyway (with a warning).
    "clip_sample": False,
}


def build_tokenizer() -> Any:
    """Word-level tokenizer over the grammar's vocabulary (lower-cases, splits punctuation)."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {word: index for index, word in enumerate(vocabulary())}
    core = Tokenizer(WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(
        single="[BOS] $A [EOS]",
        special_tokens=[("[BOS]", vocab["[BOS]"]), ("[EOS]", vocab["[EOS]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="[BOS]",
        eos_token="[EOS]",
        pad_token="[PAD]",
        unk_token="[UNK]",
        model_max_length=MAX_LENGTH,
    )


def build_text_encoder(seed: int) -> Any:
    """A 2-layer CLIPTextModel (hidden 64) sized for the toy vocabulary."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    vocab = vocabulary()
    config = CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=TEXT_HIDDEN,
        intermediate_size=2 * TEXT_HIDDEN,
        projection_dim=TEXT_HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=MAX_LENGTH + 4,
        pad_token_id=vocab.index("[PAD]"),
        bos_token_id=vocab.index("[BOS]"),
        eos_token_id=vocab.index("[EOS]"),
    )
    torch.manual_seed(seed)
    return CLIPTextModel(config)


def build_unet(seed: int) -> Any:
    """Pixel-space UNet2DConditionModel, 1.1M parameters, sized for the 15-minute recipe.

    Why this shape: cross-attention at 8×8 as well cost 30-45% more per training step, and 64 channels
    at 8×8 another 30%; without them the recipe fits 15 minutes on 2 cores and still meets the
    toy world's targets (docs/benchmarks.md, "Toy world base model"). 32 channels at 16×16, not 16:
    16 gave bright, saturated backgrounds (likely 8 norm groups of 2 channels; not verified)."""
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=IMAGE_SIZE,
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_HIDDEN,
        attention_head_dim=8,
        norm_num_groups=8,
    )


def pass_through_vae() -> Any:
    """An ``AutoencoderKL`` that returns its input (up to ~1e-4 relative error).

    Why it is exact enough: every ResNet block gets a zero last convolution (so it is the identity),
    attention is off, and the only non-linear layers left are the outer GroupNorm + SiLU. The input
    convolution writes ``[x, -x, K, -K]``: per pixel these channels sum to zero, so GroupNorm's mean is
    exactly 0 and its std is ``≈ K/2`` (the ``x²`` share is at most ``3/(2K²)``). After SiLU the output
    convolution takes ``SiLU(z) - SiLU(-z) = z`` and scales by ``K/2``. The latent std is ``e^-15``.
    """
    import torch
    from diffusers import AutoencoderKL

    width = 8  # channels: 3 for x, 3 for -x, then +K and -K
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
        block_out_channels=(width,),
        layers_per_block=1,
        latent_channels=3,
        norm_num_groups=1,
        sample_size=IMAGE_SIZE,
        scaling_factor=1.0,
        mid_block_add_attention=False,
        force_upcast=False,
    )
    k = PASS_THROUGH_K
    with torch.no_grad():
        for parameter in vae.parameters():
            parameter.zero_()
        for name, module in vae.named_modules():
            if isinstance(module, torch.nn.GroupNorm):
                module.weight.fill_(1.0)
            if name.endswith("conv2") or name.endswith("conv1"):
                # ResNet convs: conv2 = 0 makes the block the identity; conv1 left at 0 too.
                module.weight.zero_()
        for coder in (vae.encoder, vae.decoder):
            conv_in = coder.conv_in
            for c in range(3):
                conv_in.weight[c, c, 1, 1] = 1.0
                conv_in.weight[c + 3, c, 1, 1] = -1.0
            conv_in.bias[6] = k
            conv_in.bias[7] = -k
        for c in range(3):
            vae.encoder.conv_out.weight[c, c, 1, 1] = k / 2
            vae.encoder.conv_out.weight[c, c + 3, 1, 1] = -k / 2
            vae.decoder.conv_out.weight[c, c, 1, 1] = k / 2
            vae.decoder.conv_out.weight[c, c + 3, 1, 1] = -k / 2
        vae.encoder.conv_out.bias[3:] = -30.0  # log-variance: the latent is (nearly) deterministic
        for conv in (vae.quant_conv, vae.post_quant_conv):
            if conv is not None:
                n = conv.weight.shape[0]
                conv.weight[:, :, 0, 0] = torch.eye(n)
    return vae


def build_schedulers() -> tuple[Any, Any]:
    """(training DDPM scheduler, sampling DDIM scheduler) with identical betas."""
    from diffusers import DDIMScheduler, DDPMScheduler

    train = DDPMScheduler(**SCHEDULER_CONFIG)
    sample = DDIMScheduler(**SCHEDULER_CONFIG, set_alpha_to_one=False, steps_offset=1)
    return train, sample


def assemble_pipeline(text_encoder: Any, unet: Any) -> Any:
    """A StableDiffusionPipeline around trained parts (no safety checker, as for a toy world)."""
    from diffusers import StableDiffusionPipeline

    _, sampler = build_schedulers()
    return StableDiffusionPipeline(
        vae=pass_through_vae(),
        text_encoder=text_encoder,
        tokenizer=build_tokenizer(),
        unet=unet,
        scheduler=sampler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def save_pipeline(pipeline: Any, folder: str | os.PathLike[str], extra: dict[str, Any] | None = None) -> Path:
    """Save in the diffusers folder layout (safetensors), replacing ``folder`` atomically.

    Writes into a sibling temp folder and renames it into place, so a crash never leaves a
    half-written model where a loader would find it. ``extra`` goes to ``toyworld.json``
    (training recipe and timing).
    """
    target = Path(folder)
    with replace_folder(target) as staging:
        pipeline.save_pretrained(staging, safe_serialization=True)
        if extra is not None:
            (staging / "toyworld.json").write_text(json.dumps(extra, indent=2, sort_keys=True) + "\n")
    return target


SHIPPED_MODEL = Path(__file__).resolve().parent / "pretrained"


def pretrained_folder() -> Path:
    """The shipped toy model's folder: the ``livo.pretrained`` plug-in ``toyworld``, so any stage loads
    it as ``builtin:toyworld``."""
    from livo.errors import InputError

    if not (SHIPPED_MODEL / "model_index.json").is_file():
        raise InputError(f"shipped toy model {SHIPPED_MODEL}: missing; run `livo toyworld train --output DIR`")
    return SHIPPED_MODEL


def load_toy_model(model: str | os.PathLike[str] | None = None, dtype: Any = None, device: Any = None) -> Any:
    """Load the toy base model (default: the one shipped in the package) through ``load_base``.

    The same loader serves SD 1.5 from the hub or a folder: nothing toy-specific happens here.
    """
    from livo.models.loading import load_base

    return load_base(pretrained_folder() if model is None else model, dtype, device)
