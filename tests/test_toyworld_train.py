"""The training recipe: same seed, same weights; the saved folder is a loadable diffusers pipeline."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from livo.errors import ConfigError
from livo.toyworld.train import TrainConfig, learning_rate_at, train


def test_same_seed_trains_identical_weights_and_saves_a_loadable_pipeline(tmp_path) -> None:
    import torch
    from diffusers import StableDiffusionPipeline

    runs = []
    for name in ("first", "second"):
        out = tmp_path / name
        train(TrainConfig(output=str(out), steps=2, batch_size=4, seed=3, threads=1, log_every=1), log=lambda _: None)
        runs.append(load_file(out / "unet" / "diffusion_pytorch_model.safetensors"))
    assert runs[0].keys() == runs[1].keys()
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    recipe = json.loads((tmp_path / "first" / "toyworld.json").read_text())
    assert recipe["steps_done"] == 2 and recipe["train_config"]["seed"] == 3
    pipeline = StableDiffusionPipeline.from_pretrained(tmp_path / "first")
    assert pipeline.unet.config.in_channels == 3 and not list(tmp_path.glob(".first.*"))


def test_learning_rate_warms_up_then_decays_to_the_floor() -> None:
    config = TrainConfig(output="unused", steps=1000, warmup_steps=100, learning_rate=1e-3, final_lr_fraction=0.1)
    assert learning_rate_at(0, config) == pytest.approx(1e-5)
    assert learning_rate_at(99, config) == pytest.approx(1e-3)
    assert learning_rate_at(999, config) == pytest.approx(1e-4, rel=1e-3)


def test_invalid_recipe_names_the_field() -> None:
    with pytest.raises(ConfigError, match="TrainConfig.steps"):
        train(TrainConfig(output="unused", steps=0))
