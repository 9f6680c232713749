"""Deterministic renderer of toy-world scenes to small RGB images.

A scene is one glyph on a dark background: the glyph's *shape* is the subject, its *colour* the
protected attribute (people) or white (objects), and harm words add coloured 2×2 marks on and
around the glyph. Background colour, glyph size, position and a small colour jitter vary, so
images of one prompt are not copies. The same ``seed`` always gives the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from livo.toyworld.grammar import ATTRIBUTES, DEFAULT_ATTRIBUTE, HARMS, OBJECTS, PEOPLE, SKEW, PromptSpec

IMAGE_SIZE = 16
GLYPH_SIZES: tuple[int, ...] = (7, 9)
BACKGROUND_MAX = 70
COLOUR_JITTER = 12

# Reference colours (RGB 0-255). Attribute colours, the object colour and the harm-mark colours are
# far apart in RGB so the detectors can read them off blurry generated images.
ATTRIBUTE_COLOURS: dict[str, tuple[int, int, int]] = {"orange": (245, 140, 0), "teal": (0, 185, 185)}
OBJECT_COLOUR: tuple[int, int, int] = (230, 230, 230)
MARK_COLOURS: dict[str, tuple[int, int, int]] = {"bloody": (215, 0, 0), "zombie": (110, 235, 30)}
MARK_COUNTS: dict[str, tuple[int, int]] = {"bloody": (4, 6), "zombie": (3, 5)}
SHAPE_OF: dict[str, str] = {
    "doctor": "plus",
    "nurse": "frame",
    "engineer": "cross",
    "teacher": "tee",
    "hero": "ladder",
    "thief": "triangle",
    "ball": "disk",
    "kite": "hourglass",
    "box": "block",
    "house": "house",
    "tree": "tree",
    "bowl": "bowl",
}


def _shape_rule(name: str, i: np.ndarray, j: np.ndarray, s: int) -> np.ndarray:
    c, e = s // 2, s - 1
    half = (i + 1) // 2  # half-width of a triangle that widens by one pixel every two rows
    rules = {
        "plus": (i == c) | (j == c),
        "frame": (i == 0) | (i == e) | (j == 0) | (j == e),
        "cross": (i == j) | (i + j == e),
        "tee": (i == 0) | (j == c),
        "ladder": (j == 0) | (j == e) | (i == c),
        "triangle": (np.abs(j - c) == half) | ((i == e) & (np.abs(j - c) <= half)),
        "disk": (i - c) ** 2 + (j - c) ** 2 <= c * c + 1,
        "hourglass": np.abs(i - c) >= np.abs(j - c),
        "block": np.ones_like(i, dtype=bool),
        "house": ((i <= c) & (np.abs(j - c) <= i)) | ((i > c) & (j >= 1) & (j <= e - 1)),
        "tree": ((i <= e - 2) & (np.abs(j - c) <= half)) | ((i > e - 2) & (j == c)),
        "bowl": (i >= c) & ((i - c) ** 2 + (j - c) ** 2 <= c * c + 1),
    }
    return rules[name]


@cache
def glyph_mask(subject: str, size: int) -> np.ndarray:
    """Boolean ``size×size`` mask of a subject's glyph (read-only, cached)."""
    i, j = np.mgrid[0:size, 0:size]
    mask = _shape_rule(SHAPE_OF[subject], i, j, size).astype(bool)
    mask.setflags(write=False)
    return mask


@dataclass(frozen=True)
class Scene:
    """Ground truth of one rendered image: what the detectors should read back."""

    subject: str
    attribute: str | None  # the colour actually drawn; None for objects
    harm: str | None
    size: int
    top: int
    left: int
    background: tuple[int, int, int]


def sample_scene(spec: PromptSpec, rng: np.random.Generator) -> Scene:
    """Draw a scene for a prompt from the base model's training distribution (with its skew)."""
    if spec.subject in PEOPLE:
        if spec.attribute is not None:
            attribute = spec.attribute
        else:
            default = DEFAULT_ATTRIBUTE[spec.subject]
            other = next(a for a in ATTRIBUTES if a != default)
            attribute = default if rng.random() < SKEW else other
    else:
        attribute = None
    size = int(rng.choice(GLYPH_SIZES))
    top, left = (int(v) for v in rng.integers(1, IMAGE_SIZE - size, size=2))
    background = tuple(int(v) for v in rng.integers(0, BACKGROUND_MAX + 1, size=3))
    return Scene(spec.subject, attribute, spec.harm, size, top, left, background)  # type: ignore[arg-type]


def draw(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """Pixels of a scene as ``uint8`` ``(IMAGE_SIZE, IMAGE_SIZE, 3)``; rng supplies jitter and marks."""
    image = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.int16)
    image[:] = scene.background
    base = ATTRIBUTE_COLOURS[scene.attribute] if scene.attribute is not None else OBJECT_COLOUR
    colour = np.clip(np.array(base) + rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, size=3), 0, 255)
    mask = glyph_mask(scene.subject, scene.size)
    window = image[scene.top : scene.top + scene.size, scene.left : scene.left + scene.size]
    window[mask] = colour
    if scene.harm is not None:
        low, high = MARK_COUNTS[scene.harm]
        lo = max(0, scene.top - 1), max(0, scene.left - 1)
        hi = (min(IMAGE_SIZE - 2, scene.top + scene.size - 1), min(IMAGE_SIZE - 2, scene.left + scene.size - 1))
        for _ in range(int(rng.integers(low, high + 1))):
            y = int(rng.integers(lo[0], hi[0] + 1))
            x = int(rng.integers(lo[1], hi[1] + 1))
            image[y : y + 2, x : x + 2] = MARK_COLOURS[scene.harm]
    return image.astype(np.uint8)


def render(spec: PromptSpec, seed: int) -> tuple[np.ndarray, Scene]:
    """Render one image of a prompt; the same (prompt, seed) always gives the same image."""
    rng = np.random.default_rng(seed)
    scene = sample_scene(spec, rng)
    return draw(scene, rng), scene


# Training mix of the base model (fractions of prompts; the rest are objects).
MIX_NEUTRAL, MIX_EXPLICIT, MIX_HARMFUL = 0.35, 0.25, 0.20
HARMFUL_EXPLICIT = 0.3  # share of harmful people-prompts that also name a colour


def sample_training_prompt(rng: np.random.Generator) -> PromptSpec:
    """Draw a prompt from the base model's training mix (neutral, explicit, harmful, objects)."""
    u = rng.random()
    if u < MIX_NEUTRAL:
        return PromptSpec(str(rng.choice(PEOPLE)))
    if u < MIX_NEUTRAL + MIX_EXPLICIT:
        return PromptSpec(str(rng.choice(PEOPLE)), str(rng.choice(ATTRIBUTES)))
    if u < MIX_NEUTRAL + MIX_EXPLICIT + MIX_HARMFUL:
        harm = str(rng.choice(HARMS))
        subject = str(rng.choice(PEOPLE + OBJECTS))
        attribute = None
        if subject in PEOPLE and rng.random() < HARMFUL_EXPLICIT:
            attribute = str(rng.choice(ATTRIBUTES))
        return PromptSpec(subject, attribute, harm)
    return PromptSpec(str(rng.choice(OBJECTS)))


def sample_training_prompts(count: int, seed: int = 0) -> list[str]:
    """``count`` prompt texts drawn from the training mix with ``seed``: the ``livo.prompt_generators``
    plug-in ``toyworld`` (a build's ``sources.generators.toyworld``)."""
    rng = np.random.default_rng(seed)
    return [sample_training_prompt(rng).text() for _ in range(count)]


def training_batch(rng: np.random.Generator, batch_size: int) -> tuple[list[PromptSpec], np.ndarray]:
    """A batch of (prompt, image) from the training distribution; images ``uint8`` NHWC."""
    specs = [sample_training_prompt(rng) for _ in range(batch_size)]
    images = np.stack([draw(sample_scene(spec, rng), rng) for spec in specs])
    return specs, images
