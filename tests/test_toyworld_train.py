"""The training recipe: same seed, same weights; the saved folder is a loadable diffusers pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError
from safetensors.torch import load_file

from livo.toyworld.train import ToyModelRecipe, checkpoint_folders, learning_rate_at, train


def test_same_seed_trains_identical_weights_and_saves_a_loadable_pipeline(tmp_path) -> None:
    import torch
    from diffusers import StableDiffusionPipeline

    runs = []
    for name in ("first", "second"):
        out = tmp_path / name
        config = ToyModelRecipe(output=str(out), steps=2, batch_size=4, seed=3, processes=1, threads=1, log_every=1)
        train(config, log=lambda _: None)
        runs.append(load_file(out / "unet" / "diffusion_pytorch_model.safetensors"))
    assert runs[0].keys() == runs[1].keys()
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    recipe = json.loads((tmp_path / "first" / "toyworld.json").read_text())
    assert recipe["steps_done"] == 2 and recipe["train_config"]["seed"] == 3
    pipeline = StableDiffusionPipeline.from_pretrained(tmp_path / "first")
    assert pipeline.unet.config.in_channels == 3 and not list(tmp_path.glob(".first.*"))


def test_two_data_parallel_processes_train_reproducibly_and_log_through_the_caller(tmp_path) -> None:
    import torch

    runs, logs = [], []
    for name in ("first", "second"):
        out = tmp_path / name
        lines: list[str] = []
        config = ToyModelRecipe(output=str(out), steps=3, batch_size=4, seed=5, processes=2, threads=1, log_every=1)
        train(config, log=lines.append)
        runs.append(load_file(out / "unet" / "diffusion_pytorch_model.safetensors"))
        logs.append([json.loads(line) for line in lines])
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    # Rank 0 alone logs: one line per step, then the save; the loss is the same in both runs.
    assert [entry.get("step") for entry in logs[0]] == [1, 2, 3, None]
    assert [entry.get("loss") for entry in logs[0]] == [entry.get("loss") for entry in logs[1]]
    one_process = tmp_path / "one"
    train(
        ToyModelRecipe(output=str(one_process), steps=3, batch_size=4, seed=5, processes=1, log_every=3),
        log=lambda _: None,
    )
    single = load_file(one_process / "unet" / "diffusion_pytorch_model.safetensors")
    assert not all(torch.equal(single[k], runs[0][k]) for k in single), "2 ranks must draw their own batches"


def test_a_failing_rank_raises_in_the_caller(tmp_path) -> None:
    import torch.multiprocessing as mp

    blocker = tmp_path / "output"
    blocker.write_text("a file where the model folder should go")
    with pytest.raises(mp.ProcessRaisedException):
        train(ToyModelRecipe(output=str(blocker / "model"), steps=1, batch_size=2, processes=2), log=lambda _: None)


def test_learning_rate_warms_up_then_decays_to_the_floor() -> None:
    config = ToyModelRecipe(output="unused", steps=1000, warmup_steps=100, learning_rate=1e-3, final_lr_fraction=0.1)
    assert learning_rate_at(0, config) == pytest.approx(1e-5)
    assert learning_rate_at(99, config) == pytest.approx(1e-3)
    assert learning_rate_at(999, config) == pytest.approx(1e-4, rel=1e-3)


def test_invalid_recipe_names_the_field() -> None:
    with pytest.raises(ValidationError, match=r"steps\n  Input should be greater than or equal to 1"):
        train(ToyModelRecipe(output="unused", steps=0))
    with pytest.raises(ValidationError, match="divisible by processes"):
        train(ToyModelRecipe(output="unused", batch_size=5, processes=2))


def test_drawn_timesteps_follow_the_loss_weights_and_keep_the_expected_loss() -> None:
    import torch

    from livo.toyworld.model import build_schedulers
    from livo.toyworld.train import sample_timesteps

    alphas = build_schedulers()[0].alphas_cumprod
    snr = alphas / (1 - alphas)
    weight = torch.clamp(snr, max=5.0) / snr
    generator = torch.Generator().manual_seed(0)
    drawn, drawn_weight = sample_timesteps("draw", weight, 200_000, generator)
    uniform, uniform_weight = sample_timesteps("weight", weight, 200_000, generator)
    low = 100  # the low-noise steps, which min-SNR weights down
    assert (drawn < low).float().mean() == pytest.approx(float(weight[:low].sum() / weight.sum()), abs=0.005)
    assert (uniform < low).float().mean() == pytest.approx(low / len(weight), abs=0.005)
    assert torch.equal(uniform_weight, weight[uniform])
    # Same expected loss for any per-timestep loss f(t): E_uniform[w f] == E_draw[mean(w) f].
    f = torch.linspace(0, 1, len(weight)) ** 2
    assert float((drawn_weight * f[drawn]).mean()) == pytest.approx(
        float((uniform_weight * f[uniform]).mean()), rel=0.02
    )


def test_drawn_timesteps_and_fused_adamw_train_and_are_recorded(tmp_path) -> None:
    config = ToyModelRecipe(
        output=str(tmp_path / "m"),
        steps=2,
        batch_size=4,
        seed=3,
        processes=1,
        threads=1,
        timestep_sampling="draw",
        fused_optimizer=True,
    )
    train(config, log=lambda _: None)
    recipe = json.loads((tmp_path / "m" / "toyworld.json").read_text())["train_config"]
    assert recipe["timestep_sampling"] == "draw" and recipe["fused_optimizer"] is True
    with pytest.raises(ValidationError, match=r"timestep_sampling\n  Input should be 'draw' or 'weight'"):
        train(ToyModelRecipe(output="unused", timestep_sampling="uniform"))


def test_the_default_direction_loss_reads_only_neutral_people_prompts() -> None:
    """The optional loss pulls the pooled text feature of a people-prompt without a colour word to +1
    (an orange-default person) or -1 (teal) along one direction; explicit colours, objects and prompts
    dropped for guidance are left out."""
    import torch

    from livo.toyworld.grammar import PromptSpec
    from livo.toyworld.train import default_direction_loss

    direction = torch.tensor([1.0, 0.0])
    specs = [
        PromptSpec("doctor"),
        PromptSpec("nurse"),
        PromptSpec("nurse", "orange"),
        PromptSpec("kite"),
        PromptSpec("hero"),
    ]
    prompts = ["a doctor", "a nurse", "an orange nurse", "a kite", ""]
    pooled = torch.tensor([[1.0, 5.0], [-1.0, -3.0], [9.0, 9.0], [9.0, 9.0], [9.0, 9.0]])
    assert default_direction_loss(pooled, specs, prompts, direction).item() == 0.0
    pooled[0, 0], pooled[1, 0] = 0.0, 1.0  # doctor (orange) off by 1, nurse (teal) off by 2
    assert default_direction_loss(pooled, specs, prompts, direction).item() == 2.5
    assert default_direction_loss(pooled[3:], specs[3:], prompts[3:], direction).item() == 0.0


def test_recipe_numbers_that_would_train_nothing_or_nan_are_refused() -> None:
    """``inf`` passed ``ge=0`` and trained NaN weights; ``log_every=0`` divided by zero after the first
    step, ``min_snr_gamma=0`` failed in the sampler, ``grad_clip=0`` clipped every gradient to nothing
    and ran to the end, ``checkpoint_every=-1`` saved a checkpoint every step."""
    for field, value in [
        ("default_direction_weight", float("inf")),
        ("ema_decay", float("nan")),
        ("log_every", 0),
        ("min_snr_gamma", 0.0),
        ("grad_clip", 0.0),
        ("checkpoint_every", -1),
        ("final_lr_fraction", 1.5),
        ("weight_decay", -0.1),
    ]:
        with pytest.raises(ValidationError, match=field):
            ToyModelRecipe(output="m", **{field: value})


def test_checkpoints_go_beside_the_output_whatever_it_ends_with() -> None:
    """``--output runs/toy/`` put its checkpoints inside the output (``runs/toy/-step2``), which the
    final save then replaced whole, checkpoints included."""
    for output in ("runs/toy", "runs/toy/"):
        recipe = ToyModelRecipe(output=output, steps=7, checkpoint_every=3)
        assert checkpoint_folders(recipe) == [Path("runs/toy-step3"), Path("runs/toy-step6")]
    assert checkpoint_folders(ToyModelRecipe(output="m", steps=6, checkpoint_every=3)) == [Path("m-step3")]
