"""The toy value world: a synthetic text-to-image world with known bias and harm.

Light to import: ``grammar`` holds the names (subjects, colours, harm words, value texts); the
renderer and detectors need only numpy; model building, training and the report import torch and
diffusers when called.
"""

from livo.toyworld.grammar import (
    ATTRIBUTES,
    HARMS,
    OBJECTS,
    PEOPLE,
    SUBJECTS,
    VALUE_TEXTS,
    PromptSpec,
    parse_prompt,
)

__all__ = ["ATTRIBUTES", "HARMS", "OBJECTS", "PEOPLE", "SUBJECTS", "VALUE_TEXTS", "PromptSpec", "parse_prompt"]
