"""The config toolkit every stage's typed configuration is built on: strict pydantic models whose
validation errors name the file and the field."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError


class StrictModel(BaseModel):
    """A config section: unknown keys are errors (a typo fails at load time, not after an hour of
    work), and a loaded config is immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def format_validation_error(source: str, error: ValidationError) -> str:
    """One line per problem: ``SOURCE: field a.b: what is wrong``."""
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"{source}: field {where}: {item['msg']}")
    return "\n".join(lines)
