"""Which value principle each generated image gets.

A *selector* (:class:`Selector`) is any callable ``prompt -> ValueChoice | None``: ``None`` means no
principle applies and the prompt goes through the untouched base model. A selector may also have a
batched ``choose_many(prompts) -> list[ValueChoice | None]`` (:class:`BatchSelector`; ``ValueSelector``
has one): pipelines then ask it once per call instead of once per prompt.

Harm (toxicity) values are applied to every image. Bias (fairness) values are applied to each image
independently with probability ``bias_probability`` (0.5 in the paper): half the images keep the
base model's attributes, half are steered, which balances the attribute distribution. The coin flips
come from a seeded ``numpy`` generator, so a seed reproduces them. A prompt with several values
(:func:`apply_value_coins`) gets each harm value on every image and one coin per image for each of
its bias values, drawn in the list's order: a list of one value draws exactly the coins that value
alone draws.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from livo.errors import ConfigError
from livo.value_types import BatchSelector, MultiValueSelector, Selector, ValueChoice, ValueKind

__all__ = [
    "BatchSelector",
    "Selector",
    "ValueChoice",
    "ValueKind",
    "apply_coins",
    "apply_value_coins",
    "choices_for",
    "no_value",
    "values_per_image",
]


def no_value(prompt: str) -> ValueChoice | None:
    """The selector that applies nothing: every image is the base model's."""
    return None


def selections_for(prompts: Sequence[str], selector: Selector) -> list[list[ValueChoice]]:
    """Every value the selector finds for each prompt, in its order: a
    :class:`~livo.value_types.MultiValueSelector` answers with lists; any other selector's one
    answer becomes a list of one (or none). Each answer is checked to be a :class:`ValueChoice`."""
    if not callable(selector):
        raise ConfigError(
            f"selector: {selector!r} is not a selector; give a callable prompt -> ValueChoice | None "
            "(for one value on every prompt: selector=lambda prompt: ValueChoice(...))"
        )
    if isinstance(selector, MultiValueSelector):
        found = selector.choose_all(list(prompts))
        if len(found) != len(prompts):
            raise ConfigError(f"selector: choose_all returned {len(found)} lists for {len(prompts)} prompts")
        lists = [list(values) for values in found]
    else:
        selected = (
            selector.choose_many(list(prompts))
            if isinstance(selector, BatchSelector)
            else [selector(prompt) for prompt in prompts]
        )
        if len(selected) != len(prompts):
            raise ConfigError(f"selector: choose_many returned {len(selected)} values for {len(prompts)} prompts")
        lists = [[] if answer is None else [answer] for answer in selected]
    for values in lists:
        for answer in values:
            if not isinstance(answer, ValueChoice):
                raise ConfigError(
                    f"selector: returned {answer!r}; a selector returns a ValueChoice(id, text, kind) or None"
                )
    return lists


def choices_for(prompts: Sequence[str], selector: Selector) -> list[ValueChoice | None]:
    """The first value the selector finds for each prompt (None: none): what a pipeline applying
    one value per prompt applies; the others are reported, not applied."""
    return [values[0] if values else None for values in selections_for(prompts, selector)]


def values_per_image(
    prompts: Sequence[str],
    selector: Selector,
    num_images_per_prompt: int,
    rng: np.random.Generator,
    bias_probability: float = 0.5,
    selections: Sequence[Sequence[ValueChoice]] | None = None,
) -> list[ValueChoice | None]:
    """The value applied to each image, in the base pipeline's order (prompt-major: image
    ``i * num_images_per_prompt + j`` belongs to prompt ``i``): the selector's answers
    (:func:`choices_for`; or the first of ``selections`` when the caller already asked it), with
    one coin drawn per image of a bias value (none for harm or no value)."""
    if num_images_per_prompt < 1:
        raise ConfigError(f"num_images_per_prompt: must be at least 1, got {num_images_per_prompt}")
    if not 0.0 <= bias_probability <= 1.0:
        raise ConfigError(f"bias_probability: must be in [0, 1], got {bias_probability}")
    choices = (
        choices_for(prompts, selector)
        if selections is None
        else [values[0] if values else None for values in selections]
    )
    return apply_coins(choices, num_images_per_prompt, rng, bias_probability)


def apply_coins(
    choices: Sequence[ValueChoice | None], num_images_per_prompt: int, rng: np.random.Generator, bias_probability: float
) -> list[ValueChoice | None]:
    """Per image: a harm value always, a bias value where its coin says so, else None."""
    lists = [[] if choice is None else [choice] for choice in choices]
    applied = apply_value_coins(lists, num_images_per_prompt, rng, bias_probability)
    return [values[0] if values else None for values in applied]


def apply_value_coins(
    selections: Sequence[Sequence[ValueChoice]],
    num_images_per_prompt: int,
    rng: np.random.Generator | Sequence[np.random.Generator],
    bias_probability: float,
) -> list[tuple[ValueChoice, ...]]:
    """Per image (prompt-major), the values applied to it, in each prompt's order: every harm
    value, and each bias value where that image's coin for it says so (empty: the base model).

    ``rng`` is one generator for the whole call (coins drawn image by image, each image's in its
    bias values' order, so a prompt's images made over several calls from one generator get the
    coins one call would give them), or one per image: then an image's coins (one per bias value, in order) come from its own
    generator only, as its noise does when a diffusers pipeline is given one ``torch.Generator``
    per image, so the image does not depend on the others of the call."""
    rngs = None if isinstance(rng, np.random.Generator) else list(rng)
    images = len(selections) * num_images_per_prompt
    if rngs is not None and len(rngs) != images:
        raise ConfigError(f"generator: {len(rngs)} given for {images} images; give one, or one per image")
    applied: list[tuple[ValueChoice, ...]] = []
    for index, values in enumerate(selections):
        bias = [position for position, value in enumerate(values) if value.kind != "harm"]
        kept = np.ones((len(values), num_images_per_prompt), dtype=bool)
        if rngs is None:
            draws = rng.random((num_images_per_prompt, len(bias)))  # type: ignore[union-attr]
            kept[bias] = draws.T < bias_probability
        elif bias:
            first = index * num_images_per_prompt
            own = rngs[first : first + num_images_per_prompt]
            kept[bias] = np.array([image_rng.random(len(bias)) for image_rng in own]).T < bias_probability
        applied.extend(
            tuple(value for value, coins in zip(values, kept) if coins[image]) for image in range(num_images_per_prompt)
        )
    return applied
