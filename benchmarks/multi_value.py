"""Two values on one prompt, on the toy world: how the conditioning should carry them.

A harmful scene with a person of unstated colour ("a bloody nurse") needs two values: its harm
principle and "balance colour". This measures, on the same images' seeds and the same bias coins,
five ways to condition such a prompt:

* ``base``: the base model (no value);
* ``first value``: the harm value alone, what a pipeline applying one value per prompt does;
* ``second value``: the colour value alone, on the images whose coin says so (no harm value);
* ``one token per value``: ``[e_harm ; e_colour ; c_ref]`` on the images whose colour coin says so
  (``LiVOPipeline(max_values_per_prompt=2)``), ``[e_harm ; c_ref]`` on the others;
* ``composed text``: one token for the joined value text ``"no blood, balance colour"`` on the
  images whose coin says so, the harm token on the others.

The prompts are the report's harmful people-prompts (each person with one harm word), which the
shipped value encoder's harm pairs hold out and its bias pairs never show with a harm word. For each
way: harm rate, D1 of the colour and subject fidelity (the toy-world detectors), mean over prompts.
``--value-encoder`` measures another trained encoder (default: the shipped one).

``--single-value`` also measures the single-value prompts the way training evaluations do
(:func:`livo.toyworld.evaluation.measure_pipeline`: neutral and explicit people, harmful prompts,
objects; seed 4242), once with one value per prompt and once with the two-value pipeline, so a
retrained encoder can be compared with the shipped one on what it already did.

    source scripts/env.sh && python benchmarks/multi_value.py --out /tmp/multi-value
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

WAYS = ("base", "first value", "second value", "one token per value", "composed text")


def applied_for(way: str, values: list[Any], coins: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Per image, what ``way`` conditions on, given the values the two-value pipeline applies."""
    from livo.models import ValueChoice

    if way == "base":
        return [()] * len(coins)
    if way == "first value":
        return [(values[0],)] * len(coins)
    if way == "second value":
        return [applied[1:] for applied in coins]
    if way == "one token per value":
        return coins
    composed = ValueChoice("composed", ", ".join(v.text for v in values), "harm")
    return [(composed,) if len(applied) > 1 else applied for applied in coins]


def measure(pipeline: Any, per_prompt: int, steps: int, guidance_scale: float, seed: int) -> dict[str, Any]:
    import torch

    from livo.models import apply_value_coins
    from livo.toyworld.detect import detect
    from livo.toyworld.evaluation import toy_values
    from livo.toyworld.grammar import report_prompts
    from livo.toyworld.measure import measure_prompt

    specs = [spec for spec in report_prompts()["harmful"] if spec.is_person]
    rows: dict[str, list[dict[str, Any]]] = {way: [] for way in WAYS}
    for index, spec in enumerate(specs):
        prompt = spec.text()
        values = toy_values(prompt)
        assert [v.kind for v in values] == ["harm", "bias"], prompt
        coins = apply_value_coins([values], per_prompt, np.random.default_rng(seed + index), 0.5)
        for way in WAYS:
            applied = applied_for(way, values, coins)
            embeds, negatives = pipeline.encode([prompt] * per_prompt, 1, applied)
            generators = [torch.Generator().manual_seed(seed + index * per_prompt + k) for k in range(per_prompt)]
            images = pipeline.base(
                prompt_embeds=embeds,
                negative_prompt_embeds=negatives,
                generator=generators,
                num_inference_steps=steps,
                guidance_scale=guidance_scale,
                output_type="np",
            ).images
            pixels = np.clip(np.rint(np.asarray(images) * 255.0), 0, 255).astype(np.uint8)
            rows[way].append(measure_prompt(spec, detect(pixels)))
    summary = {
        way: {
            key: round(float(np.mean([row[key] for row in rows[way]])), 4)
            for key in ("harm_rate", "d1", "subject_fidelity")
        }
        for way in WAYS
    }
    return {"prompts": [spec.text() for spec in specs], "summary": summary, "rows": rows}


SINGLE_KEYS = (
    "d1_people",
    "default_share_people",
    "harm_rate",
    "fidelity_people",
    "fidelity_harmful",
    "fidelity_benign",
    "attribute_obeyed",
)


def measure_single(base: Any, value_encoder: Any, per_prompt: int, steps: int, guidance_scale: float) -> dict[str, Any]:
    """The training evaluation's numbers for the base, one value per prompt and two values per prompt."""
    from livo.models import LiVOPipeline
    from livo.toyworld.evaluation import ToyValueSelector, measure_pipeline, toy_selector

    pipelines = {
        "base": base,
        "one value per prompt": LiVOPipeline(base, value_encoder, selector=toy_selector, bias_probability=0.5),
        "two values per prompt": LiVOPipeline(
            base, value_encoder, selector=ToyValueSelector(), bias_probability=0.5, max_values_per_prompt=2
        ),
    }
    measured = {}
    for name, pipeline in pipelines.items():
        metrics = measure_pipeline(
            pipeline, per_prompt=per_prompt, steps=steps, guidance_scale=guidance_scale, seed=4242
        )
        measured[name] = {key: round(float(metrics[key]), 4) for key in SINGLE_KEYS}
    return measured


def markdown(summary: dict[str, dict[str, float]]) -> str:
    lines = ["| conditioning | harm rate | D1 | subject fidelity |", "| --- | --- | --- | --- |"]
    for way, numbers in summary.items():
        lines.append(
            f"| {way} | {numbers['harm_rate']:.3f} | {numbers['d1']:.3f} | {numbers['subject_fidelity']:.3f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for results.json")
    parser.add_argument("--value-encoder", default=None, help="a trained value encoder folder (default: shipped)")
    parser.add_argument("--per-prompt", type=int, default=50)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance-scale", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--single-value", action="store_true", help="also measure the single-value prompts")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from livo.models import LiVOPipeline

    torch.set_num_threads(args.threads)
    pipeline = LiVOPipeline.from_pretrained("builtin:toyworld", value_encoder_path=args.value_encoder)
    pipeline.base.set_progress_bar_config(disable=True)
    result = measure(pipeline, args.per_prompt, args.steps, args.guidance_scale, args.seed)
    if args.single_value:
        result["single_value"] = measure_single(
            pipeline.base, pipeline.value_encoder, args.per_prompt, args.steps, args.guidance_scale
        )
    result["command"] = " ".join(["python", "benchmarks/multi_value.py", *sys.argv[1:]])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    temporary = out / "results.json.tmp"
    temporary.write_text(json.dumps(result, indent=1) + "\n")
    temporary.replace(out / "results.json")
    print(markdown(result["summary"]))
    for name, numbers in result.get("single_value", {}).items():
        print(name, json.dumps(numbers))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
