"""The U-Net's conditioning in LiVO, one convention for training and inference.

With ``L = tokenizer.model_max_length`` (77 for CLIP, 16 for the tiny model) and ``d`` the text
encoder's width:

* ``c_ref  = E_T(prompt tokenised to L − 1, padded)``                 shape ``(B, L − 1, d)``
* ``c_θ    = concat([e_v], c_ref)`` along the sequence axis            shape ``(B, L, d)``
* unconditional (classifier-free guidance) ``= E_T("" tokenised to L)`` shape ``(B, L, d)``,
  i.e. exactly the base pipeline's empty-prompt embedding, the same length as ``c_θ``.
* prompts that get no value use the base pipeline's own ``E_T(prompt tokenised to L)``.

Because CLIP's text encoder is causal, ``c_ref`` equals the first ``L − 1`` rows of the base
embedding ``E_T(prompt tokenised to L)`` for any prompt that fits in ``L − 1`` tokens: only the last
padding token is dropped to make room for ``e_v``. A prompt of ``L − 1`` or more tokens loses its last
word to that room, in training and inference alike.

The text encoder is frozen: its outputs are computed without gradient, so in ``c_θ`` only ``e_v``
carries a graph (into the value encoder).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from livo.errors import ConfigError

if TYPE_CHECKING:
    from transformers import CLIPTextModel, PreTrainedTokenizerBase

    from livo.models.value_encoder import ValueEncoder


@dataclass
class ValueConditioning:
    """``c_theta`` (B, L, d) for the value-steered model, ``c_ref`` (B, L−1, d) for the frozen
    reference, and ``e_v`` (B, d), the value token itself."""

    c_theta: torch.Tensor
    c_ref: torch.Tensor
    e_v: torch.Tensor


def sequence_length(tokenizer: PreTrainedTokenizerBase, text_encoder: CLIPTextModel) -> int:
    """``L``: the tokenizer's ``model_max_length``, checked against the text encoder's positions."""
    length = int(tokenizer.model_max_length)
    positions = int(text_encoder.config.max_position_embeddings)
    if length > positions:
        raise ConfigError(f"tokenizer.model_max_length: {length} exceeds the text encoder's {positions} positions")
    return length


@torch.no_grad()
def encode_text(
    text_encoder: CLIPTextModel, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], length: int
) -> torch.Tensor:
    """``E_T(texts)``: last hidden states (after the final layer norm) of texts tokenised to
    ``length`` tokens (truncated keeping the end token, then padded), as the base pipeline does."""
    if length < 2:
        raise ConfigError(f"length: at least 2 tokens are needed (start and end), got {length}")
    tokens = tokenizer(list(texts), padding="max_length", max_length=length, truncation=True, return_tensors="pt")
    attention_mask = None
    if getattr(text_encoder.config, "use_attention_mask", False):
        attention_mask = tokens.attention_mask.to(text_encoder.device)
    output = text_encoder(tokens.input_ids.to(text_encoder.device), attention_mask=attention_mask)
    return output.last_hidden_state


def base_conditioning(
    text_encoder: CLIPTextModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str]
) -> torch.Tensor:
    """``E_T(prompt)`` at the full length ``L``: what the untouched base pipeline uses."""
    return encode_text(text_encoder, tokenizer, prompts, sequence_length(tokenizer, text_encoder))


def reference_conditioning(
    text_encoder: CLIPTextModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str]
) -> torch.Tensor:
    """``c_ref = E_T(prompt)`` tokenised to ``L − 1`` so that ``[e_v ; c_ref]`` has length ``L``."""
    return encode_text(text_encoder, tokenizer, prompts, sequence_length(tokenizer, text_encoder) - 1)


def unconditional_conditioning(
    text_encoder: CLIPTextModel,
    tokenizer: PreTrainedTokenizerBase,
    batch_size: int,
    negative_prompt: str = "",
) -> torch.Tensor:
    """Classifier-free guidance's branch: ``E_T(negative_prompt)`` (default ``""``) at length ``L``,
    repeated ``batch_size`` times; the same length as ``c_θ`` and as the base conditioning."""
    embedding = encode_text(text_encoder, tokenizer, [negative_prompt], sequence_length(tokenizer, text_encoder))
    return embedding.expand(batch_size, -1, -1).contiguous()


def with_value_token(e_v: torch.Tensor, c_ref: torch.Tensor) -> torch.Tensor:
    """``c_θ = concat([e_v], c_ref)`` along the sequence axis, in ``c_ref``'s dtype and device."""
    if e_v.dim() != 2 or c_ref.dim() != 3 or e_v.shape[0] != c_ref.shape[0] or e_v.shape[1] != c_ref.shape[2]:
        raise ConfigError(f"e_v {tuple(e_v.shape)} does not fit c_ref {tuple(c_ref.shape)}")
    return torch.cat([e_v.to(device=c_ref.device, dtype=c_ref.dtype)[:, None, :], c_ref], dim=1)


def value_conditioning(
    value_encoder: ValueEncoder,
    text_encoder: CLIPTextModel,
    tokenizer: PreTrainedTokenizerBase,
    values: Sequence[str],
    prompts: Sequence[str],
) -> ValueConditioning:
    """Build ``e_v``, ``c_ref`` and ``c_θ`` for a batch of (value, prompt). Gradients, when enabled,
    flow into ``value_encoder`` only."""
    c_ref = reference_conditioning(text_encoder, tokenizer, prompts)
    e_v = value_encoder.encode_values(tokenizer, values, prompts)
    return ValueConditioning(c_theta=with_value_token(e_v, c_ref), c_ref=c_ref, e_v=e_v)
