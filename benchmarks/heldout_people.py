"""Which colour a trained value encoder gives each toy-world person, seen in its pairs or held out.

LiVO's bias value must turn each person to the colour that person does *not* default to. On the
people its pairs show, a trained encoder learns that; on held-out people it has to work it out from
the prompt's text alone. This script shows what it does there: for each value encoder given, the
value "balance colour" is applied to every image (no 0.5 mixing) of each person's neutral prompt
("a hero"), and the detectors read the colour and the subject. A base row, with no value, comes
first. Then, with several encoders (training seeds, recipes), one line says whether the held-out
people got one colour between them in each.

It also asks whether the frozen text encoder carries a person's default colour at all: each
person's subject feature (the text encoder's last hidden state at the subject word of "a hero") is
projected on the difference of the class means of the *trained* people, orange-default minus
teal-default. The projection of a held-out person, as a share of the trained people's mean absolute
projection, is how clearly its default is written where an encoder trained on those people looks.

    source scripts/env.sh && python benchmarks/heldout_people.py --out /tmp/heldout \\
        --value-encoder RUN/runs/livo/value_encoder [--value-encoder ANOTHER ...]

Every image of a person starts from the same seeds for every encoder, so rows compare image by
image.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

DEMO_HELD_OUT = ("hero", "thief")


def colour_and_fidelity(pipeline: Any, per_person: int, steps: int, guidance_scale: float, seed: int) -> dict:
    """Per person: how many images came out orange, teal, and as the prompt's subject."""
    from livo.toyworld.detect import detect
    from livo.toyworld.grammar import PEOPLE
    from livo.toyworld.measure import generate

    images = generate(pipeline, [f"a {p}" for p in PEOPLE], per_person, steps, guidance_scale, seed)
    rows = {}
    for person, batch in zip(PEOPLE, images):
        found = detect(batch)
        rows[person] = {
            "orange": sum(d.attribute == "orange" for d in found),
            "teal": sum(d.attribute == "teal" for d in found),
            "subject": sum(d.subject == person for d in found),
            "n": len(found),
        }
    return rows


def default_colour_projection(pipeline: Any, held_out: tuple[str, ...]) -> dict[str, float]:
    """Each person's subject feature on the trained people's orange-minus-teal direction, as a share
    of the trained people's mean absolute projection (positive: orange)."""
    import torch

    from livo.models.conditioning import base_conditioning
    from livo.toyworld.grammar import DEFAULT_ATTRIBUTE, PEOPLE

    prompts = [f"a {p}" for p in PEOPLE]
    with torch.no_grad():
        hidden = base_conditioning(pipeline.text_encoder, pipeline.tokenizer, prompts).float().numpy()
    # [BOS] a <subject> [EOS]: the subject is the third token.
    features = hidden[:, 2, :]
    features = features - features.mean(0)
    trained = [i for i, p in enumerate(PEOPLE) if p not in held_out]
    orange = [i for i in trained if DEFAULT_ATTRIBUTE[PEOPLE[i]] == "orange"]
    teal = [i for i in trained if DEFAULT_ATTRIBUTE[PEOPLE[i]] == "teal"]
    direction = features[orange].mean(0) - features[teal].mean(0)
    projection = features @ direction
    scale = float(np.abs(projection[trained]).mean())
    return {person: round(float(projection[i]) / scale, 3) for i, person in enumerate(PEOPLE)}


def markdown(measured: dict[str, dict], held_out: tuple[str, ...]) -> str:
    from livo.toyworld.grammar import DEFAULT_ATTRIBUTE, PEOPLE

    header = "| encoder (images: orange, the subject drawn / all) | " + " | ".join(
        f"{p} ({DEFAULT_ATTRIBUTE[p]}{', held out' if p in held_out else ''})" for p in PEOPLE
    )
    lines = [header + " |", "| --- |" + " --- |" * len(PEOPLE)]
    for name, rows in measured.items():
        cells = [f"{rows[p]['orange']} orange, {rows[p]['subject']} as drawn / {rows[p]['n']}" for p in PEOPLE]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def held_out_colours(rows: dict[str, dict], held_out: tuple[str, ...]) -> list[str]:
    """The majority colour of each held-out person under one encoder."""
    return ["orange" if rows[p]["orange"] * 2 > rows[p]["n"] else "teal" for p in held_out]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for results.json")
    parser.add_argument("--value-encoder", action="append", required=True, help="a trained value encoder folder")
    parser.add_argument("--held-out", default=",".join(DEMO_HELD_OUT), help="people the encoders' pairs left out")
    parser.add_argument("--per-person", type=int, default=32)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance-scale", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default=None, help="the base model the encoders were trained on (default: shipped)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from livo.errors import InputError
    from livo.models import LiVOPipeline, ValueEncoder
    from livo.toyworld.evaluation import toy_selector
    from livo.toyworld.grammar import PEOPLE
    from livo.toyworld.model import load_toy_model

    held_out = tuple(p.strip() for p in args.held_out.split(",") if p.strip())
    unknown = [p for p in held_out if p not in PEOPLE]
    if unknown:
        raise InputError(f"--held-out: {', '.join(unknown)} not toy-world people ({', '.join(PEOPLE)})")
    torch.set_num_threads(args.threads)
    base = load_toy_model(args.model)
    base.set_progress_bar_config(disable=True)
    settings = (args.per_person, args.steps, args.guidance_scale, args.seed)
    measured = {"base (no value)": colour_and_fidelity(base, *settings)}
    for folder in args.value_encoder:
        encoder = ValueEncoder.from_pretrained(folder).eval()
        always = LiVOPipeline(base, encoder, selector=toy_selector, bias_probability=1.0)
        measured[folder] = colour_and_fidelity(always, *settings)
    colours = {name: held_out_colours(rows, held_out) for name, rows in measured.items() if name in args.value_encoder}
    result = {
        "held_out": list(held_out),
        "measured": measured,
        "held_out_colours": colours,
        "encoders_giving_held_out_people_one_colour": sum(len(set(c)) == 1 for c in colours.values()),
        "default_colour_projection": default_colour_projection(base, held_out),
        "command": " ".join(["python", "benchmarks/heldout_people.py", *sys.argv[1:]]),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    temporary = out / "results.json.tmp"
    temporary.write_text(json.dumps(result, indent=1) + "\n")
    temporary.replace(out / "results.json")
    print(markdown(measured, held_out))
    print(
        f"held-out people ({', '.join(held_out)}) given one colour between them: "
        f"{result['encoders_giving_held_out_people_one_colour']} of {len(colours)} encoders"
    )
    print(
        "default colour on the trained people's direction (+ orange):", json.dumps(result["default_colour_projection"])
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
