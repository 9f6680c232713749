"""The value encoder E_V: a CLIP text encoder that turns (value principle, prompt) into one token.

E_V has exactly the base text encoder's architecture and starts from its weights
(:meth:`ValueEncoder.from_text_encoder`); all of it is trained while the diffusion model stays
frozen. It reads ``value + ", " + prompt`` and returns the pooled output: the hidden state of the
first end-of-text token after the final layer norm, without CLIP's projection.

``ValueEncoder`` *is* a ``CLIPTextModel`` (same modules, same state-dict keys), so its checkpoints are
ordinary transformers checkpoints: ``save_pretrained(folder)`` writes ``config.json`` and
``model.safetensors``; ``CLIPTextModel.from_pretrained(folder)`` reads them back, and
``ValueEncoder.from_pretrained`` reads any ``CLIPTextModel`` checkpoint (e.g. a published LiVO value
encoder). The tokenizer is the base model's; it is passed in, not stored.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import CLIPTextModel

from livo.errors import ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def value_texts(values: Sequence[str], prompts: Sequence[str]) -> list[str]:
    """The text E_V reads for each (value, prompt): ``value + ", " + prompt``."""
    if len(values) != len(prompts):
        raise ConfigError(f"values: {len(values)} values for {len(prompts)} prompts")
    return [f"{value}, {prompt}" for value, prompt in zip(values, prompts, strict=True)]


def value_tokens(
    encoder: Any, tokenizer: PreTrainedTokenizerBase, values: Sequence[str], prompts: Sequence[str]
) -> torch.Tensor:
    """``e_v`` for each (value, prompt) from ``encoder``: a :class:`ValueEncoder` or what wraps one
    for training (a DeepSpeed engine), called on the tokens and read at its pooled output."""
    tokens = tokenizer(
        value_texts(values, prompts),
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    return encoder(input_ids=tokens.input_ids.to(encoder.device)).pooler_output


class ValueEncoder(CLIPTextModel):
    """A ``CLIPTextModel`` whose pooled output is LiVO's value token ``e_v`` (one vector per prompt)."""

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls, pretrained_model_name_or_path: str | os.PathLike[str], *args: Any, **kwargs: Any
    ) -> ValueEncoder:
        """transformers' loader, with two things a folder needs: one holding a single weights
        variant's files only (``model.fp16.safetensors``, as ``hf download --include
        "*.fp16.safetensors"`` leaves a published LiVO folder) loads with that variant, as the base
        pipeline beside it does; and a folder that cannot be loaded is an error naming it (transformers
        names the folder above ``subfolder``)."""
        from livo.errors import InputError
        from livo.models.weights_variant import component_weights_variant

        folder = Path(os.fspath(pretrained_model_name_or_path)).expanduser() / str(kwargs.get("subfolder") or "")
        local = folder.is_dir()
        if local and kwargs.get("variant") is None:
            kwargs["variant"] = component_weights_variant(folder)
        try:
            loaded = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except OSError as error:
            if not local:
                raise
            raise InputError(f"value encoder {folder}: cannot be loaded: {error}") from None
        return loaded  # type: ignore[no-any-return]

    @classmethod
    def from_text_encoder(cls, text_encoder: CLIPTextModel) -> ValueEncoder:
        """A trainable copy of ``text_encoder``: same config, same weights, same dtype and device."""
        parameter = next(text_encoder.parameters())
        encoder = cls(text_encoder.config)
        encoder.load_state_dict(text_encoder.state_dict())
        encoder.to(device=parameter.device, dtype=parameter.dtype)
        encoder.requires_grad_(True)
        return encoder

    def encode_values(
        self, tokenizer: PreTrainedTokenizerBase, values: Sequence[str], prompts: Sequence[str]
    ) -> torch.Tensor:
        """``e_v`` for each (value, prompt), shape ``(batch, hidden)``.

        The text is tokenised to the tokenizer's ``model_max_length`` (truncated, the end token kept)
        and padded, exactly like the base text encoder's input.
        """
        return value_tokens(self, tokenizer, values, prompts)

    def save_pretrained(self, save_directory: str | os.PathLike[str], *args: Any, **kwargs: Any) -> None:
        """Save in the transformers layout, recorded as a plain ``CLIPTextModel`` so that tools
        which dispatch on ``architectures`` load it without LiVO installed."""
        super().save_pretrained(save_directory, *args, **kwargs)
        _record_as_clip_text_model(save_directory)


def _record_as_clip_text_model(folder: str | os.PathLike[str]) -> None:
    path = Path(folder) / "config.json"
    config = json.loads(path.read_text())
    config["architectures"] = ["CLIPTextModel"]
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    os.replace(temporary, path)
