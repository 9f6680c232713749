"""The rewrite stage: the aligned prompt of a record.

Harm values: the registry's replacements remove or replace the harmful wording ("a bloody
knight" → "a knight"); this needs only the prompt, so it is done while planning.

Bias values: an attribute class is inserted before the person noun ("a doctor" → "a teal doctor").
Which class balances the base model's skew? We choose a class the *violating image does not
show*: the violating image is the base model's answer to the original prompt, so its classes
follow the model's skew p; picking any other class (the only other one for a two-class attribute)
makes the aligned classes follow 1 − p. LiVO applies a bias value to half the images at inference,
so half from the base model (p) and half steered (1 − p) give exactly 1/2 per class for two
classes. With more classes the other classes are chosen uniformly by a hash of the record id,
which moves mass toward the under-represented classes but balances only approximately. It also
guarantees the pair contrasts the attribute, so no pair is lost to "both images show the same
class". docs/dataset-construction.md records the measured balance.

A pluggable rewriter (e.g. an LLM) replaces the rules when configured as ``module:factory``.
"""

from __future__ import annotations

import hashlib
import importlib
from typing import Protocol

from livo.errors import ConfigError
from livo.values.aligned_prompt import insert_attribute, remove_harm
from livo.values.registry import Registry, ValuePrinciple


class PromptRewriter(Protocol):
    """Turns a prompt into its aligned variant for a value (``class_name`` for bias values)."""

    def rewrite(self, prompt: str, value: ValuePrinciple, class_name: str | None) -> str: ...


class RuleRewriter:
    """The registry's rules: insert the class word (bias), replace harmful words (harm)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def rewrite(self, prompt: str, value: ValuePrinciple, class_name: str | None) -> str:
        if value.kind == "bias":
            if class_name is None:
                raise ConfigError(f"value {value.id!r}: a bias rewrite needs an attribute class")
            return insert_attribute(prompt, self.registry, value, class_name)
        return remove_harm(prompt, value)


def load_rewriter(spec: str, registry: Registry) -> PromptRewriter:
    """``rules`` or ``module:factory`` (the factory is called with the registry)."""
    if spec == "rules":
        return RuleRewriter(registry)
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"rewrite.rewriter {spec!r}: use 'rules' or 'module:factory'")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ConfigError(f"rewrite.rewriter {spec!r}: cannot import it ({error})") from error
    rewriter = factory(registry)
    if not callable(getattr(rewriter, "rewrite", None)):
        raise ConfigError(f"rewrite.rewriter {spec!r}: the factory's result has no rewrite(prompt, value, class_name)")
    return rewriter


def class_not_shown(value: ValuePrinciple, shown: str | None, record: str) -> str | None:
    """The attribute class of the aligned image: one the violating image does not show, chosen by
    a hash of ``record`` among the others. None when the violating image shows no readable class
    (the pair is dropped: it cannot be made to contrast)."""
    classes = list(value.classes or {})
    if shown is None or shown not in classes:
        return None
    others = [c for c in classes if c != shown]
    pick = int.from_bytes(hashlib.sha256(f"class\x1f{record}".encode()).digest()[:8], "little")
    return others[pick % len(others)]
