"""The prompts an evaluation measures, each with what it measures.

Categories:

- ``bias``: a prompt that names a person without the protected attribute ("a doctor"); measured
  by D1/D2 over the bias value's attribute classes;
- ``explicit``: a prompt that states the attribute ("a teal nurse"); measured by how often the
  image obeys it (a method must not override the user);
- ``harm``: a prompt with a harm ("a bloody thief"); Avg R, Avg S, max@k, prob@k for its value;
- ``benign``: everything else ("a kite"); the rate of spurious harm under every harm value;
- ``double``: a prompt that needs a harm value and a bias value at once ("a bloody nurse"; in a
  prompt file its ``value`` is ``harm_id+bias_id``); Avg R under the harm value and D1 under the
  bias value, on the same images.

Subject fidelity (does the image still show the prompt's subject) is measured on all of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from livo.errors import InputError
from livo.values.registry import Registry, load_registry, resolve_registry_path

Category = Literal["bias", "explicit", "harm", "benign", "double"]
CATEGORIES: tuple[str, ...] = ("bias", "explicit", "harm", "benign", "double")


@dataclass(frozen=True)
class EvalPrompt:
    """A prompt, its category, the value it is judged under, (explicit prompts) the class asked for
    and (double prompts) the bias value judged beside the harm value ``value_id``."""

    text: str
    category: Category
    value_id: str | None = None
    attribute: str | None = None
    bias_value_id: str | None = None

    @classmethod
    def from_row(cls, text: str, category: str, value: str | None, attribute: str | None) -> EvalPrompt:
        """A prompt-file row; a double prompt's ``value`` is ``harm_id+bias_id``."""
        if category == "double" and value is not None and "+" in value:
            harm, _, bias = value.partition("+")
            return cls(text, category, harm, attribute, bias)  # type: ignore[arg-type]  # checked by _checked
        return cls(text, category, value, attribute)  # type: ignore[arg-type]  # checked by _checked


def prompt_set(name: str) -> list[EvalPrompt]:
    """A named prompt set: the rows a ``livo.prompt_sets`` plug-in gives (the toy world's: ``toyworld``),
    in the prompt-file schema (``prompt``, ``category``, ``value``, ``attribute``)."""
    from livo.plugins import PROMPT_SETS, load_plugin

    rows = load_plugin(PROMPT_SETS, name)()
    return [
        EvalPrompt.from_row(str(row["prompt"]), row["category"], row.get("value"), row.get("attribute")) for row in rows
    ]


def read_prompt_file(path: str, registry: Registry) -> list[EvalPrompt]:
    """Rows of a prompt table (.jsonl/.csv/.parquet) with ``prompt``, ``category`` and, where the
    category needs them, ``value`` and ``attribute``; every reference is checked against ``registry``."""
    from livo.data.io import check_json_prompts, read_table

    table = read_table(path)
    missing = [c for c in ("prompt", "category") if c not in table.column_names]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; need prompt, category[, value, attribute]")
    check_json_prompts(path, table, "prompt")
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    prompts = []
    for row in range(table.num_rows):

        def cell(name: str, row: int = row) -> str | None:
            value = columns.get(name, [None] * table.num_rows)[row]
            return None if value in (None, "") else str(value)

        prompts.append(
            _checked(
                path,
                row,
                EvalPrompt.from_row(str(cell("prompt") or ""), str(cell("category")), cell("value"), cell("attribute")),
                registry,
            )
        )
    if not prompts:
        raise InputError(f"{path}: no prompts")
    return prompts


def _checked(path: str, row: int, prompt: EvalPrompt, registry: Registry) -> EvalPrompt:
    """``row`` counts from 0; messages count from 1, as every other row number the commands print."""
    where = f"{path}: row {row + 1}"
    if not prompt.text.strip():
        raise InputError(f"{where}: empty prompt")
    if prompt.category not in CATEGORIES:
        raise InputError(f"{where}: category {prompt.category!r} is not one of {CATEGORIES}")
    if prompt.category == "benign":
        return prompt
    if prompt.category == "double":
        return _checked_double(where, prompt, registry)
    if prompt.value_id is None or prompt.value_id not in registry.ids:
        raise InputError(
            f"{where}: category {prompt.category} needs a 'value' from the registry {registry.ids}, "
            f"got {prompt.value_id!r}"
        )
    value = registry.value(prompt.value_id)
    expected = "harm" if prompt.category == "harm" else "bias"
    if value.kind != expected:
        raise InputError(
            f"{where}: value {value.id!r} is a {value.kind} value, category {prompt.category} needs {expected}"
        )
    if prompt.category == "explicit" and prompt.attribute not in (value.classes or {}):
        raise InputError(f"{where}: explicit prompt needs 'attribute', one of {sorted(value.classes or {})}")
    return prompt


def _checked_double(where: str, prompt: EvalPrompt, registry: Registry) -> EvalPrompt:
    pair = (prompt.value_id, prompt.bias_value_id)
    kinds = tuple(registry.value(v).kind if v in registry.ids else None for v in pair)
    if kinds != ("harm", "bias"):
        raise InputError(
            f"{where}: category double needs 'value' harm_id+bias_id (a harm value, then a bias value from the "
            f"registry {registry.ids}), got {'+'.join(v or '' for v in pair)!r}"
        )
    return prompt


def load_prompts(
    set_name: str | None,
    file: str | None,
    registry_spec: str,
    categories: Sequence[Category] | None = None,
    per_category: Mapping[Category, int] | None = None,
) -> tuple[list[EvalPrompt], Registry]:
    """The evaluation's prompts and the registry they refer to; ``categories`` keeps only those,
    ``per_category`` keeps the first N prompts of a category."""
    registry = load_registry(resolve_registry_path(registry_spec))
    if set_name is not None:
        prompts = prompt_set(set_name)
        for row, prompt in enumerate(prompts):
            _checked(f"prompt set {set_name}", row, prompt, registry)
    elif file is not None:
        prompts = read_prompt_file(file, registry)
    else:
        raise InputError("prompts: give a prompt 'set' or a 'file'")
    if categories:
        prompts = [p for p in prompts if p.category in categories]
    if per_category:
        seen: dict[str, int] = {}
        kept = []
        for prompt in prompts:
            seen[prompt.category] = seen.get(prompt.category, 0) + 1
            if seen[prompt.category] <= per_category.get(prompt.category, len(prompts)):
                kept.append(prompt)
        prompts = kept
    if not prompts:
        raise InputError(f"no prompts left in categories {list(categories or [])}")
    return prompts, registry
