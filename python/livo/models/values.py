"""Which value principle each generated image gets.

A *selector* is any callable ``prompt -> value | None``. The value it returns may be:

* ``None``: no principle applies; the prompt goes through the untouched base model;
* a :class:`ValueChoice` (or any object with ``text`` and ``kind`` attributes, e.g. the FAISS
  selector's result), or a ``(text, kind)`` tuple, with ``kind`` ``"bias"`` or ``"harm"``;
* a plain ``str``: treated as a **harm** value, i.e. always applied.

A selector may also have ``choose_many(prompts) -> list`` (``ValueSelector`` does), the same
answers for many prompts at once; pipelines then ask it once per call.

Harm (toxicity) values are applied to every image. Bias (fairness) values are applied to each image
independently with probability ``bias_probability`` (0.5 in the paper): half the images keep the
base model's attributes, half are steered, which balances the attribute distribution. The coin flips
come from a seeded ``numpy`` generator, so a seed reproduces them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from livo.errors import ConfigError

ValueKind = Literal["bias", "harm"]
KINDS: tuple[str, ...] = ("bias", "harm")


@dataclass(frozen=True)
class ValueChoice:
    """A value principle (``text``, e.g. "gender equality") and its ``kind`` ("bias" or "harm")."""

    text: str
    kind: ValueKind = "harm"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"kind: expected 'bias' or 'harm', got {self.kind!r}")
        if not self.text.strip():
            raise ConfigError("text: a value principle must not be empty")


Selector = Callable[[str], Any]


def as_value_choice(selected: Any) -> ValueChoice | None:
    """Normalise what a selector returned (see the module docstring) to ``ValueChoice | None``."""
    if selected is None or isinstance(selected, ValueChoice):
        return selected
    if isinstance(selected, str):
        return ValueChoice(selected, "harm")
    if isinstance(selected, tuple) and len(selected) == 2:
        return ValueChoice(str(selected[0]), selected[1])
    if hasattr(selected, "text") and hasattr(selected, "kind"):
        return ValueChoice(str(selected.text), str(selected.kind))  # type: ignore[arg-type]
    raise ConfigError(
        f"selector: returned {selected!r}; expected None, a str, a (text, kind) tuple or an object"
        " with text and kind"
    )


def values_per_image(
    prompts: Sequence[str],
    selector: Selector,
    num_images_per_prompt: int,
    rng: np.random.Generator,
    bias_probability: float = 0.5,
) -> list[ValueChoice | None]:
    """The value applied to each image, in the base pipeline's order (prompt-major: image
    ``i * num_images_per_prompt + j`` belongs to prompt ``i``). The selector is called once per prompt,
    or once for all of them when it has a batched ``choose_many`` (``ValueSelector``: one embedding
    pass instead of one per prompt); one coin is drawn per image of a bias value (none for harm or no
    value)."""
    if num_images_per_prompt < 1:
        raise ConfigError(f"num_images_per_prompt: must be at least 1, got {num_images_per_prompt}")
    if not 0.0 <= bias_probability <= 1.0:
        raise ConfigError(f"bias_probability: must be in [0, 1], got {bias_probability}")
    choose_many = getattr(selector, "choose_many", None)
    selected = choose_many(list(prompts)) if callable(choose_many) else [selector(prompt) for prompt in prompts]
    if len(selected) != len(prompts):
        raise ConfigError(f"selector: choose_many returned {len(selected)} values for {len(prompts)} prompts")
    applied: list[ValueChoice | None] = []
    for raw in selected:
        choice = as_value_choice(raw)
        if choice is None:
            applied.extend([None] * num_images_per_prompt)
        elif choice.kind == "harm":
            applied.extend([choice] * num_images_per_prompt)
        else:
            coins = rng.random(num_images_per_prompt) < bias_probability
            applied.extend(choice if coin else None for coin in coins)
    return applied
