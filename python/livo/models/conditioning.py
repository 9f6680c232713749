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

Several values on one prompt get one token each, in the order given:
``c_θ = concat([e_v1, …, e_vk], c_ref)`` with ``c_ref`` tokenised to ``L − k``, so the sequence keeps
its length ``L``; each ``e_vi`` is the value encoder's token for ``value_i + ", " + prompt``, exactly
the token that value alone gets. With one value this is the single-token form above, bit for bit.

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


def max_value_tokens(tokenizer: PreTrainedTokenizerBase) -> int:
    """How many value tokens one prompt can carry: ``L − 2``, leaving ``c_ref`` its start and end
    tokens (every further value costs the prompt one more of its last tokens)."""
    return int(tokenizer.model_max_length) - 2


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
    text_encoder: CLIPTextModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], value_tokens: int = 1
) -> torch.Tensor:
    """``c_ref = E_T(prompt)`` tokenised to ``L − value_tokens`` so that ``[e_v1 … e_vk ; c_ref]``
    has length ``L``."""
    _check_value_tokens(value_tokens, tokenizer)
    return encode_text(text_encoder, tokenizer, prompts, sequence_length(tokenizer, text_encoder) - value_tokens)


def _check_value_tokens(count: int, tokenizer: PreTrainedTokenizerBase) -> None:
    limit = max_value_tokens(tokenizer)
    if not 1 <= count <= limit:
        raise ConfigError(f"value tokens: {count} per prompt; this tokenizer's length allows 1 to {limit}")


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
    if e_v.dim() != 2:
        raise ConfigError(f"e_v {tuple(e_v.shape)} does not fit c_ref {tuple(c_ref.shape)}")
    return with_value_tokens(e_v[:, None, :], c_ref)


def with_value_tokens(e_vs: torch.Tensor, c_ref: torch.Tensor) -> torch.Tensor:
    """``c_θ = concat([e_v1, …, e_vk], c_ref)``: ``e_vs`` is ``(B, k, d)``, ``c_ref`` ``(B, L − k, d)``."""
    if e_vs.dim() != 3 or c_ref.dim() != 3 or e_vs.shape[0] != c_ref.shape[0] or e_vs.shape[2] != c_ref.shape[2]:
        raise ConfigError(f"e_v {tuple(e_vs.shape)} does not fit c_ref {tuple(c_ref.shape)}")
    return torch.cat([e_vs.to(device=c_ref.device, dtype=c_ref.dtype), c_ref], dim=1)


def value_conditioning(
    value_encoder: ValueEncoder,
    text_encoder: CLIPTextModel,
    tokenizer: PreTrainedTokenizerBase,
    values: Sequence[str] | Sequence[Sequence[str]],
    prompts: Sequence[str],
) -> ValueConditioning:
    """Build ``e_v``, ``c_ref`` and ``c_θ`` for a batch of (value, prompt), or of (values, prompt)
    with the same number ``k`` of values on every prompt: then ``e_v`` is ``(B, k, d)`` and
    ``c_ref`` ``(B, L − k, d)``. Gradients, when enabled, flow into ``value_encoder`` only."""
    if len(values) != len(prompts):
        raise ConfigError(f"values: {len(values)} given for {len(prompts)} prompts")
    one_each = all(isinstance(value, str) for value in values)
    lists = [[value] if isinstance(value, str) else list(value) for value in values]
    count = len(lists[0]) if lists else 1
    if any(len(texts) != count for texts in lists):
        raise ConfigError(
            f"values: every prompt of one batch needs the same number of values, got {sorted({len(t) for t in lists})}"
        )
    _check_value_tokens(count, tokenizer)
    c_ref = reference_conditioning(text_encoder, tokenizer, prompts, count)
    # One encoder call for every (value, prompt): position i of each prompt's list is column i.
    flat = value_encoder.encode_values(
        tokenizer, [t for texts in lists for t in texts], [p for p, texts in zip(prompts, lists) for _ in texts]
    )
    e_v = flat.reshape(len(lists), count, -1)
    return ValueConditioning(c_theta=with_value_tokens(e_v, c_ref), c_ref=c_ref, e_v=e_v[:, 0] if one_each else e_v)
