"""LiVO and Diffusion-DPO at SD 1.5's real architecture size (random weights, 64 px images).

Every other test runs a tiny model; shapes, token lengths and module wiring that only SD 1.5's sizes
exercise (77 positions, width 768, four U-Net levels, 8x VAE down-sampling, 1.07B parameters) are
checked here with the trainer's own objectives, gradient checkpointing on, as an SD 1.5 run uses them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from livo.models.architectures import sd15_configs, sd15_sized_components
from livo.train.config import TrainConfig
from livo.train.objectives import DPOObjective, LiVOObjective
from livo.train.pairs_input import PairBatch

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("torch_one_thread")]

IMAGE = 64  # 8x8 latents: the U-Net's three down-samplings still divide them


def digest(module: torch.nn.Module) -> str:
    """One hash of every parameter's bytes: bit-identity without a 4 GB copy."""
    sha = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        sha.update(name.encode())
        sha.update(tensor.detach().contiguous().view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()


@pytest.fixture(scope="module")
def pipeline():  # type: ignore[no-untyped-def]
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(**sd15_sized_components(seed=0, image_size=IMAGE))


def batch() -> PairBatch:
    generator = torch.Generator().manual_seed(0)
    aligned = torch.rand((1, 3, IMAGE, IMAGE), generator=generator) * 2 - 1
    return PairBatch(
        prompts=["a photo of a doctor"], values=["gender equality"], aligned=aligned, violating=aligned.flip(-1)
    )


def config(**changes: object) -> TrainConfig:
    values = {"dataset": "unused", "output": "unused", "gradient_checkpointing": True, "beta": 1.0, "alpha": 1.0}
    values.update(changes)
    return TrainConfig.model_validate(values)


def test_the_architecture_is_sd15s(pipeline) -> None:  # type: ignore[no-untyped-def]
    counts = {
        name: sum(p.numel() for p in getattr(pipeline, name).parameters()) for name in ("unet", "vae", "text_encoder")
    }
    assert round(counts["unet"] / 1e6, 1) == 859.5
    assert round(counts["vae"] / 1e6, 1) == 83.7
    assert round(counts["text_encoder"] / 1e6, 1) == 123.1
    text = pipeline.text_encoder.config
    assert (text.hidden_size, text.max_position_embeddings, text.vocab_size) == (768, 77, 49408)
    assert pipeline.unet.config.cross_attention_dim == 768 == sd15_configs()["unet"]["cross_attention_dim"]
    assert pipeline.tokenizer.model_max_length == 77 and pipeline.vae_scale_factor == 8


def test_one_livo_step_moves_only_the_value_encoder(pipeline) -> None:  # type: ignore[no-untyped-def]
    frozen = {name: digest(getattr(pipeline, name)) for name in ("unet", "vae", "text_encoder")}
    objective = LiVOObjective(pipeline, pipeline.scheduler, config())
    encoder = objective.module
    before = {name: p.detach().clone() for name, p in encoder.named_parameters()}
    optimizer = torch.optim.AdamW(objective.trainable_parameters(), lr=1e-3)

    loss, diagnostics = objective.compute(encoder, batch(), torch.Generator().manual_seed(1))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    optimizer.step()

    moved = [name for name, p in encoder.named_parameters() if not torch.equal(p.detach(), before[name])]
    # Every part of the encoder gets a gradient through the frozen U-Net (the pooled end token feeds e_v).
    assert any(name.endswith("final_layer_norm.weight") for name in moved) and len(moved) > len(before) // 2
    for name, expected in frozen.items():
        module = getattr(pipeline, name)
        assert all(p.grad is None for p in module.parameters()), name
        assert digest(module) == expected, f"{name} changed"
    pipeline.unet.disable_gradient_checkpointing()


def test_one_dpo_lora_step_moves_the_adapters_and_not_the_reference(pipeline) -> None:  # type: ignore[no-untyped-def]
    base = {name: p.detach().clone() for name, p in pipeline.unet.named_parameters() if "lora" not in name}
    objective = DPOObjective(pipeline, pipeline.scheduler, config(loss="dpo", beta_dpo=5000.0))
    unet = objective.module
    adapters = {name: p.detach().clone() for name, p in unet.named_parameters() if p.requires_grad}
    assert adapters and all("lora" in name for name in adapters)
    optimizer = torch.optim.AdamW(objective.trainable_parameters(), lr=1e-3)

    loss, _ = objective.compute(unet, batch(), torch.Generator().manual_seed(2))
    loss.backward()
    optimizer.step()

    moved = [
        name for name, p in unet.named_parameters() if name in adapters and not torch.equal(p.detach(), adapters[name])
    ]
    assert moved, "no LoRA weight moved"
    # The reference (the same U-Net with adapters off) is the base weights, untouched: the wrapped
    # projections (now named ``...to_q.base_layer.weight``) as much as every other layer.
    frozen = {name: p for name, p in unet.named_parameters() if not p.requires_grad}
    assert any(".base_layer." in name for name in frozen)
    assert {name.replace(".base_layer", "") for name in frozen} == set(base)
    for name, p in frozen.items():
        assert torch.equal(p.detach(), base[name.replace(".base_layer", "")]), name


def test_models_init_writes_a_folder_every_stage_loads(tmp_path: Path) -> None:
    """The command's one code path, at the tiny size (the SD 1.5 folder is 4.3 GB: a benchmark)."""
    from livo.cli import main
    from livo.models import load_base

    assert main(["models", "init", "tiny", str(tmp_path / "tiny"), "--seed", "3"]) == 0
    loaded = load_base(tmp_path / "tiny")
    from diffusers import StableDiffusionPipeline

    from livo.models.architectures import tiny_components

    again = StableDiffusionPipeline(**tiny_components(seed=3))
    for name in ("unet", "vae", "text_encoder"):
        assert digest(getattr(loaded, name)) == digest(getattr(again, name)), name

    # --overwrite replaces a model folder, and never a folder of other files named by mistake.
    assert main(["models", "init", "tiny", str(tmp_path / "tiny"), "--seed", "4", "--overwrite"]) == 0
    assert digest(load_base(tmp_path / "tiny").unet) != digest(again.unet)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "notes.txt").write_text("precious")
    assert main(["models", "init", "tiny", str(tmp_path / "notes"), "--overwrite"]) == 2
    assert (tmp_path / "notes" / "notes.txt").read_text() == "precious"


def test_a_float16_folder_loads_whole_in_float32_and_generates(tmp_path: Path) -> None:
    """transformers keeps a folder's float16 text encoder unless told; next to diffusers' float32 U-Net
    that pipeline failed at its first step."""
    from livo.cli import main
    from livo.models import LiVOPipeline, load_base

    assert main(["models", "init", "tiny", str(tmp_path / "half"), "--dtype", "float16"]) == 0
    loaded = load_base(tmp_path / "half")
    assert {getattr(loaded, name).dtype for name in ("unet", "vae", "text_encoder")} == {torch.float32}
    image = loaded("a doctor", num_inference_steps=1, output_type="np").images[0]
    assert image.shape == (16, 16, 3)
    loaded.save_pretrained(tmp_path / "with-encoder")
    from livo.models.value_encoder import ValueEncoder

    ValueEncoder.from_text_encoder(loaded.text_encoder).half().save_pretrained(tmp_path / "encoder")
    livo = LiVOPipeline.from_pretrained(tmp_path / "with-encoder", value_encoder_path=tmp_path / "encoder")
    assert livo.value_encoder.dtype == torch.float32


def test_clip_vit_l14_has_the_published_size() -> None:
    """The judges' CLIP, counted on the meta device (no memory): ViT-L/14 with SD 1.5's text tower."""
    from transformers import CLIPModel

    from livo.models.architectures import clip_vit_l14_config, sd15_text_encoder_config

    config = clip_vit_l14_config()
    with torch.device("meta"):
        model = CLIPModel(config)
    vision = sum(p.numel() for p in model.vision_model.parameters()) + model.visual_projection.weight.numel()
    total = sum(p.numel() for p in model.parameters())
    assert round(total / 1e6, 1) == 427.6
    assert round(vision / 1e6, 1) == 304.0
    assert config.vision_config.image_size == 224 and config.vision_config.patch_size == 14
    assert config.text_config.hidden_size == sd15_text_encoder_config().hidden_size == 768
    assert config.projection_dim == 768
