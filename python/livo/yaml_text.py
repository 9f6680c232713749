"""YAML text as LiVO reads it: configs, registries and ``--set`` values.

PyYAML's safe loader keeps the last of two equal keys in a mapping without a word, so a config that
sets ``max_steps`` twice, or a registry with two ``keywords`` lists, would lose one silently; and its
errors run over several lines. :func:`parse_yaml` refuses a repeated key and says what is wrong in
one line, naming the file (or flag) and the place.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable
from typing import Any

from livo.errors import ConfigError


def parse_yaml(text: str, where: str) -> Any:
    """``text`` parsed by the safe loader, a key given twice in one mapping refused; errors are a
    :class:`~livo.errors.ConfigError` of one line naming ``where`` and the line and column."""
    import yaml

    try:
        return yaml.load(text, Loader=_unique_key_loader())
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        place = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = " ".join(str(error.problem or error.context or "").split())
        raise ConfigError(f"{where}: not valid YAML: {place}{problem}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{where}: not valid YAML: {' '.join(str(error).split())}") from None


@functools.cache
def _unique_key_loader() -> type:
    """A SafeLoader subclass (made on first use: PyYAML is imported only by commands that read YAML)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # "<<: *base": the mapping's own keys may override the merged ones
                key = self.construct_object(key_node, deep=deep)
                if isinstance(key, Hashable):
                    if key in seen:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"key {key!r} is given twice in one mapping", key_node.start_mark
                        )
                    seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


__all__ = ["parse_yaml"]
