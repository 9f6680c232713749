"""Which weights variant a diffusers pipeline folder holds.

A pipeline downloaded with only its half-precision files (``hf download MODEL --include
"*.fp16.safetensors" "*.json" "*.txt"``, the usual way to halve Stable Diffusion's download) has
``unet/diffusion_pytorch_model.fp16.safetensors`` and no plain weights. diffusers loads such a folder
only when told ``variant="fp16"``, and otherwise fails naming a ``.bin`` file the folder was never
meant to have. :func:`folder_weights_variant` reads the variant off the file names, so a folder
loads the way it was downloaded.
"""

from __future__ import annotations

import re
from pathlib import Path

from livo.errors import InputError

# The pipeline components that carry weights (a tokenizer or scheduler has none).
WEIGHT_COMPONENTS = ("unet", "vae", "text_encoder")
_STEMS = r"(?:diffusion_pytorch_model|model|pytorch_model)"
_SHARD = r"(?:-\d{5}-of-\d{5})?"
PLAIN_WEIGHTS = re.compile(rf"^{_STEMS}{_SHARD}\.(?:safetensors|bin)$|^{_STEMS}\.(?:safetensors|bin)\.index\.json$")
VARIANT_WEIGHTS = re.compile(
    rf"^{_STEMS}\.(?P<variant>[A-Za-z0-9_]+){_SHARD}\.(?:safetensors|bin)$"
    rf"|^{_STEMS}\.(?:safetensors|bin)\.index\.(?P<index_variant>[A-Za-z0-9_]+)\.json$"
)


def folder_weights_variant(folder: Path) -> str | None:
    """``None`` when every weight-carrying component of ``folder`` has plain weights; the variant
    (e.g. ``"fp16"``) when the components without plain weights all have that one variant's files.

    Raises :class:`InputError` naming the component when one has no weights at all, or when the
    variant is ambiguous (components with different variants, or several variants and no plain
    weights): pass ``variant=`` to the loader then."""
    variants: dict[str, set[str]] = {}
    for name in WEIGHT_COMPONENTS:
        component = folder / name
        if not component.is_dir():
            continue  # a missing component is named by the folder checks
        found = _variants_without_plain_weights(component)
        if found is not None:
            variants[name] = found
    if not variants:
        return None
    empty = [f"{name}/" for name, found in variants.items() if not found]
    if empty:
        raise InputError(
            f"base model folder {folder}: {', '.join(empty)} has no weights (expected "
            "diffusion_pytorch_model.safetensors or model.safetensors, or a variant such as "
            "diffusion_pytorch_model.fp16.safetensors)"
        )
    common = set.intersection(*variants.values())
    if len(common) == 1:
        return common.pop()
    listed = "; ".join(f"{name}/: {', '.join(sorted(found))}" for name, found in variants.items())
    raise InputError(
        f"base model folder {folder}: no plain weights and no single weights variant ({listed}); "
        "load it with variant= naming the one to use"
    )


def component_weights_variant(folder: Path) -> str | None:
    """The same for one component's folder (a U-Net alone, as fine-tunes are published): ``None``
    with plain weights, else the one variant its files carry; an error naming the folder otherwise."""
    found = _variants_without_plain_weights(folder)
    if found is None:
        return None
    if len(found) == 1:
        return found.pop()
    if not found:
        raise InputError(
            f"{folder}: no weights (expected diffusion_pytorch_model.safetensors, or a variant such as "
            "diffusion_pytorch_model.fp16.safetensors)"
        )
    raise InputError(f"{folder}: no plain weights and several variants ({', '.join(sorted(found))})")


def _variants_without_plain_weights(component: Path) -> set[str] | None:
    """None when ``component`` holds plain weight files, else the variants its weight files carry."""
    files = [entry.name for entry in component.iterdir() if entry.is_file()]
    if any(PLAIN_WEIGHTS.match(file) for file in files):
        return None
    found = (VARIANT_WEIGHTS.match(file) for file in files)
    return {match["variant"] or match["index_variant"] for match in found if match}
