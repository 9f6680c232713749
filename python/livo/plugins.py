"""What a stage finds by name instead of importing it: built-in models, judges, registries, prompt sets,
prompt generators and training evaluations.

Each kind is a group of Python entry points (``importlib.metadata``), declared by the package that
provides it, in its ``pyproject.toml``:

```toml
[project.entry-points."livo.judges"]
my-judge = "my_package.judges:MyJudge"
```

LiVO's own toy world is plugged in exactly this way (see this project's ``pyproject.toml``), so no
stage imports it: a build config that says ``judges: {default: {kind: toyworld}}`` or a model spec
``builtin:toyworld`` reaches it through here, as a user's own judge or model would be reached.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from livo.errors import ConfigError

PRETRAINED = "livo.pretrained"  # name -> () -> folder of a diffusers pipeline shipped in a package
JUDGES = "livo.judges"  # kind -> (model=, threshold=, device=, **options) -> ImageJudge
REGISTRIES = "livo.registries"  # name -> () -> path of a value registry YAML
PROMPT_SETS = "livo.prompt_sets"  # name -> () -> evaluation prompt rows (prompt, category, value, attribute)
PROMPT_GENERATORS = "livo.prompt_generators"  # name -> (count, seed) -> prompts
TRAIN_EVALUATIONS = "livo.train_evaluations"  # name -> periodic evaluation of a model being trained

KINDS = {
    PRETRAINED: "built-in model",
    JUDGES: "judge kind",
    REGISTRIES: "built-in registry",
    PROMPT_SETS: "prompt set",
    PROMPT_GENERATORS: "prompt generator",
    TRAIN_EVALUATIONS: "training evaluation",
}


@cache
def _group(group: str) -> dict[str, EntryPoint]:
    return {point.name: point for point in entry_points(group=group)}


def plugin_names(group: str) -> list[str]:
    """The names installed in ``group``, sorted."""
    return sorted(_group(group))


def has_plugin(group: str, name: str) -> bool:
    return name in _group(group)


def load_plugin(group: str, name: str) -> Any:
    """The object the entry point ``name`` of ``group`` names, imported now; a :class:`ConfigError`
    naming the known names when there is none."""
    point = _group(group).get(name)
    if point is None:
        known = ", ".join(plugin_names(group)) or "none installed"
        raise ConfigError(f"no {KINDS.get(group, group)} named {name!r} (known: {known})")
    try:
        return point.load()
    except Exception as error:  # a broken installation: name the plug-in, not only the import
        raise ConfigError(
            f"{KINDS.get(group, group)} {name!r} ({point.value}, from {point.dist.name if point.dist else 'an unknown package'}) "
            f"cannot be loaded: {type(error).__name__}: {error}"
        ) from error
