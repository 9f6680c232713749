"""load_base: local folders and built-in models load, a missing hub model fails fast with instructions."""

import re
import time

import pytest
import torch

from livo.errors import ConfigError, InputError
from livo.models import load_base
from livo.models.loading import check_base
from livo.testing import tiny_components


def test_missing_hub_model_offline_fails_within_seconds_with_instructions(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(ConfigError) as raised:
        load_base("stable-diffusion-v1-5/stable-diffusion-v1-5", torch.float16, "cpu", cache_dir=tmp_path)
    elapsed = time.monotonic() - started
    message = str(raised.value)
    assert elapsed < 10, f"took {elapsed:.1f} s"
    assert "hf download stable-diffusion-v1-5/stable-diffusion-v1-5" in message
    assert "huggingface-cli download stable-diffusion-v1-5/stable-diffusion-v1-5" in message
    assert "pass that folder" in message
    with pytest.raises(ConfigError, match="hf download stable-diffusion-v1-5/stable-diffusion-v1-5"):
        check_base("stable-diffusion-v1-5/stable-diffusion-v1-5", cache_dir=tmp_path)


def test_local_folder_loads_in_the_requested_dtype(tmp_path) -> None:  # noqa: ANN001
    from diffusers import StableDiffusionPipeline

    original = StableDiffusionPipeline(**tiny_components(seed=0))
    original.save_pretrained(tmp_path / "base")
    loaded = load_base(tmp_path / "base", torch.bfloat16, "cpu")
    assert isinstance(loaded, StableDiffusionPipeline)
    assert loaded.unet.dtype == torch.bfloat16 and loaded.text_encoder.dtype == torch.bfloat16
    name, weight = next(iter(original.unet.state_dict().items()))
    assert torch.equal(loaded.unet.state_dict()[name], weight.to(torch.bfloat16))
    assert loaded.tokenizer("a doctor").input_ids == original.tokenizer("a doctor").input_ids


def test_a_folder_that_is_not_a_pipeline_is_refused(tmp_path) -> None:  # noqa: ANN001
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="model_index.json"):
        load_base(tmp_path / "empty")
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(InputError, match="not a folder"):
        load_base(tmp_path / "weights.bin")
    (tmp_path / "v1-5-pruned-emaonly.safetensors").write_bytes(b"")
    with pytest.raises(InputError, match=r"a single-file checkpoint; .*from_single_file\("):
        load_base(tmp_path / "v1-5-pruned-emaonly.safetensors")
    with pytest.raises(InputError, match="does not exist"):
        load_base(tmp_path / "missing")
    for path, message in [
        ("empty", "model_index.json"),
        ("weights.bin", "not a folder"),
        ("v1-5-pruned-emaonly.safetensors", "a single-file checkpoint"),
        ("missing", "does not exist"),
    ]:
        with pytest.raises(InputError, match=message):
            check_base(tmp_path / path)


def test_a_builtin_model_loads_by_name_frozen_like_any_base() -> None:
    from livo.models import load_frozen_base, resolve_model

    folder = resolve_model("builtin:toyworld")
    assert folder.endswith("pretrained")
    assert resolve_model("toyworld") == folder  # a bare built-in name, when no such path exists
    assert resolve_model("org/some-model") == "org/some-model"  # a hub id stays as given
    pipeline = load_frozen_base("builtin:toyworld", "float32", "cpu")
    assert pipeline.safety_checker is None
    for name in ("unet", "text_encoder", "vae"):
        component = getattr(pipeline, name)
        assert not component.training and not any(p.requires_grad for p in component.parameters())


def test_an_unknown_builtin_model_names_the_installed_ones() -> None:
    with pytest.raises(ConfigError, match=r"no built-in model named 'nosuch' \(known: toyworld\)"):
        load_base("builtin:nosuch")


def _edit_json(path, **changes) -> None:  # noqa: ANN001
    import json

    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("no vae folder", "missing the vae/ folder that model_index.json names"),
        ("narrow cross-attention", "text_encoder hidden_size 32 does not match unet cross_attention_dim 64"),
        ("long tokenizer", "tokenizer model_max_length 77 exceeds text_encoder max_position_embeddings 16"),
        ("garbage weights", "unet/diffusion_pytorch_model.safetensors cannot be read"),
        # transformers built a default-size text encoder and failed on the weights, naming nothing.
        ("no text encoder config", "missing text_encoder/config.json"),
        ("no scheduler config", "missing scheduler/scheduler_config.json"),
        # A sharded download stopped between its shards.
        ("a shard missing", "unet/diffusion_pytorch_model.safetensors.index.json names 1 shard(s) that are not there"),
    ],
)
def test_a_damaged_model_folder_is_named_with_the_field(tmp_path, damage: str, message: str) -> None:  # noqa: ANN001
    import shutil

    from diffusers import StableDiffusionPipeline

    folder = tmp_path / "base"
    StableDiffusionPipeline(**tiny_components(seed=0)).save_pretrained(folder)
    if damage == "no vae folder":
        shutil.rmtree(folder / "vae")
    elif damage == "narrow cross-attention":
        _edit_json(folder / "unet" / "config.json", cross_attention_dim=64)
    elif damage == "long tokenizer":
        _edit_json(folder / "tokenizer" / "tokenizer_config.json", model_max_length=77)
    elif damage == "no text encoder config":
        (folder / "text_encoder" / "config.json").unlink()
    elif damage == "no scheduler config":
        (folder / "scheduler" / "scheduler_config.json").unlink()
    elif damage == "a shard missing":
        pipeline = StableDiffusionPipeline.from_pretrained(folder)
        shutil.rmtree(folder / "unet")
        pipeline.unet.save_pretrained(folder / "unet", max_shard_size="20KB")
        shards = sorted((folder / "unet").glob("diffusion_pytorch_model-*.safetensors"))
        assert len(shards) > 1
        shards[-1].unlink()
    else:
        (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(InputError) as raised:
        load_base(folder)
    assert message in str(raised.value) and str(folder) in str(raised.value)
    # A build's driver only checks (its workers load the weights): the same errors, the weights
    # files' headers read but not their tensors.
    with pytest.raises(InputError, match=re.escape(message)):
        check_base(folder)


def _fp16_only_folder(folder, original) -> None:  # noqa: ANN001
    """``original`` saved as a download restricted to ``*.fp16.safetensors`` leaves it: half-precision
    weight files only, named with the variant."""
    original.to(torch.float16).save_pretrained(folder, variant="fp16")
    original.to(torch.float32)
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.safetensors"))
    assert names == [
        "text_encoder/model.fp16.safetensors",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "vae/diffusion_pytorch_model.fp16.safetensors",
    ]


def test_a_folder_of_fp16_weight_files_only_loads_with_that_variant(tmp_path) -> None:  # noqa: ANN001
    from diffusers import StableDiffusionPipeline

    original = StableDiffusionPipeline(**tiny_components(seed=0))
    _fp16_only_folder(tmp_path / "fp16", original)
    loaded = load_base(tmp_path / "fp16")
    assert loaded.unet.dtype == torch.float32  # the requested dtype, whatever the files hold
    for name, weight in original.unet.state_dict().items():
        assert torch.equal(loaded.unet.state_dict()[name], weight.to(torch.float16).to(torch.float32))

    # A component without any weight file is named; so are variants that leave the choice open.
    (tmp_path / "fp16" / "vae" / "diffusion_pytorch_model.fp16.safetensors").rename(tmp_path / "vae.safetensors")
    with pytest.raises(InputError, match=r"fp16: vae/ has no weights \(expected diffusion_pytorch_model"):
        load_base(tmp_path / "fp16")
    with pytest.raises(InputError, match=r"fp16: vae/ has no weights"):
        check_base(tmp_path / "fp16")  # a build's driver passed it, and every worker failed on it
    (tmp_path / "vae.safetensors").rename(tmp_path / "fp16" / "vae" / "diffusion_pytorch_model.bf16.safetensors")
    with pytest.raises(InputError, match=r"no single weights variant \(unet/: fp16; vae/: bf16; text_encoder/: fp16\)"):
        load_base(tmp_path / "fp16")


def test_a_cached_hub_model_of_fp16_weight_files_only_loads_offline(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    from diffusers import StableDiffusionPipeline

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    original = StableDiffusionPipeline(**tiny_components(seed=0))
    # The hub cache's layout: refs/main names the snapshot folder that holds the files.
    repo = tmp_path / "cache" / "models--someone--tiny-sd"
    _fp16_only_folder(repo / "snapshots" / ("0" * 40), original)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    loaded = load_base("someone/tiny-sd", cache_dir=tmp_path / "cache")
    name, weight = next(iter(original.text_encoder.state_dict().items()))
    assert torch.equal(loaded.text_encoder.state_dict()[name], weight.to(torch.float16).to(torch.float32))


def test_optional_components_a_download_left_out_load_as_none(tmp_path) -> None:  # noqa: ANN001
    import json

    from diffusers import StableDiffusionPipeline

    from livo.models.loading import load_frozen_base

    StableDiffusionPipeline(**tiny_components(seed=0)).save_pretrained(tmp_path / "base")
    # SD 1.5's model_index.json names a safety checker and its feature extractor; the folders are absent.
    index = json.loads((tmp_path / "base" / "model_index.json").read_text())
    index |= {
        "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
        "feature_extractor": ["transformers", "CLIPImageProcessor"],
        "requires_safety_checker": True,
    }
    (tmp_path / "base" / "model_index.json").write_text(json.dumps(index))
    for load in (load_base, load_frozen_base):
        pipeline = load(tmp_path / "base")
        assert pipeline.safety_checker is None and pipeline.feature_extractor is None


def test_a_missing_value_encoder_is_named_before_the_base_loads(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    from diffusers import StableDiffusionPipeline

    from livo.models import LiVOPipeline

    StableDiffusionPipeline(**tiny_components(seed=0)).save_pretrained(tmp_path / "base")
    with pytest.raises(InputError, match=r"base: has no value_encoder/ folder; pass value_encoder_path"):
        LiVOPipeline.from_pretrained(tmp_path / "base")
    with pytest.raises(InputError, match=r"value encoder .*missing: no such folder, and not a hub id"):
        LiVOPipeline.from_pretrained(tmp_path / "base", value_encoder_path=tmp_path / "missing")
    # A relative path that looks like a hub id (owner/name) was left to transformers, which failed
    # after the base had loaded, about connecting to the hub.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=r"value encoder runs/missing: no such folder, and not a hub id"):
        LiVOPipeline.from_pretrained("base", value_encoder_path="runs/missing")
    (tmp_path / "encoder.safetensors").write_bytes(b"")
    with pytest.raises(InputError, match=r"value encoder folder .*encoder.safetensors: not a folder"):
        LiVOPipeline.from_pretrained(tmp_path / "base", value_encoder_path=tmp_path / "encoder.safetensors")


def test_a_value_encoder_of_fp16_weight_files_only_loads_like_its_base(tmp_path) -> None:  # noqa: ANN001
    # A published LiVO folder downloaded with --include "*.fp16.safetensors": the base loaded with its
    # variant, then transformers failed on value_encoder/, naming the folder above it.
    from diffusers import StableDiffusionPipeline

    from livo.models import LiVOPipeline, ValueEncoder

    original = StableDiffusionPipeline(**tiny_components(seed=0))
    _fp16_only_folder(tmp_path / "livo", original)
    encoder = ValueEncoder.from_text_encoder(original.text_encoder)
    encoder.to(torch.float16).save_pretrained(tmp_path / "livo" / "value_encoder", variant="fp16")
    assert sorted(p.name for p in (tmp_path / "livo" / "value_encoder").iterdir()) == [
        "config.json",
        "model.fp16.safetensors",
    ]
    loaded = LiVOPipeline.from_pretrained(tmp_path / "livo")
    name, weight = next(iter(original.text_encoder.state_dict().items()))
    assert torch.equal(loaded.value_encoder.state_dict()[name], weight.to(torch.float16).to(torch.float32))
    (tmp_path / "livo" / "value_encoder" / "model.fp16.safetensors").unlink()
    with pytest.raises(InputError, match=r"livo/value_encoder: no weights \(expected"):
        ValueEncoder.from_pretrained(tmp_path / "livo", subfolder="value_encoder")


def test_a_value_encoder_of_another_width_is_refused_when_the_pipeline_is_made() -> None:
    # It failed only at the first image that got a value, after generations without one had worked.
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTextConfig

    from livo.models import LiVOPipeline, ValueEncoder

    base = StableDiffusionPipeline(**tiny_components(seed=0))
    config = CLIPTextConfig(**{**base.text_encoder.config.to_dict(), "hidden_size": 64, "intermediate_size": 64})
    with pytest.raises(ConfigError, match="value_encoder: hidden_size 64 does not match the base text encoder's 32"):
        LiVOPipeline(base, ValueEncoder(config))


def _tiny_sdxl(folder) -> None:  # noqa: ANN001
    """A real, tiny StableDiffusionXLPipeline folder: two text encoders, a U-Net with SDXL's added
    text-time embedding."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    parts = tiny_components(seed=0)
    text = CLIPTextConfig(
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=1, vocab_size=1000,
        max_position_embeddings=77, projection_dim=32,
    )  # fmt: skip
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, projection_class_embeddings_input_dim=80, cross_attention_dim=64,
        norm_num_groups=8,
    )  # fmt: skip
    StableDiffusionXLPipeline(
        vae=AutoencoderKL(**parts["vae"].config),
        text_encoder=CLIPTextModel(text),
        text_encoder_2=CLIPTextModelWithProjection(text),
        tokenizer=parts["tokenizer"],
        tokenizer_2=parts["tokenizer"],
        unet=unet,
        scheduler=EulerDiscreteScheduler(),
    ).save_pretrained(folder)


def test_a_pipeline_of_another_family_is_named_as_such(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """An SDXL folder failed as "text_encoder hidden_size 768 does not match unet cross_attention_dim
    2048", which reads like a damaged download; it is named as a family LiVO does not work with, as a
    folder and offline from the hub cache. So is a pipeline whose denoiser is a transformer."""
    import json
    import shutil

    from diffusers import StableDiffusionPipeline

    _tiny_sdxl(tmp_path / "sdxl")
    sdxl = r"StableDiffusionXLPipeline has two text encoders \(text_encoder, text_encoder_2\), as SDXL does"
    with pytest.raises(InputError, match=rf"base model folder {tmp_path}/sdxl: {sdxl}"):
        load_base(tmp_path / "sdxl")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo = tmp_path / "cache" / "models--someone--tiny-sdxl"
    shutil.copytree(tmp_path / "sdxl", repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    with pytest.raises(InputError, match=rf"base model someone/tiny-sdxl: {sdxl}"):
        load_base("someone/tiny-sdxl", cache_dir=tmp_path / "cache")

    # A transformer denoiser (SD3, Flux, PixArt): the layout of model_index.json is enough to tell.
    folder = tmp_path / "dit"
    StableDiffusionPipeline(**tiny_components(seed=0)).save_pretrained(folder)
    index = json.loads((folder / "model_index.json").read_text())
    index["_class_name"] = "StableDiffusion3Pipeline"
    index["transformer"] = ["diffusers", "SD3Transformer2DModel"]
    del index["unet"]
    (folder / "unet").rename(folder / "transformer")
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(InputError, match=r"StableDiffusion3Pipeline denoises with a transformer \(transformer/\)"):
        load_base(folder)


def test_a_published_unet_loads_from_the_cache_or_a_folder_in_its_variant(tmp_path) -> None:  # noqa: ANN001
    """Fine-tunes such as Diffusion-DPO's SD 1.5 U-Net are published as U-Net repositories (its
    weights under unet/); an evaluation's `unet:` takes one from the local cache by id, or a folder,
    in whatever single weights variant it holds. Nothing is downloaded."""
    from diffusers import StableDiffusionPipeline

    from livo.models import load_unet

    original = StableDiffusionPipeline(**tiny_components(seed=3)).unet
    repo = tmp_path / "cache" / "models--someone--dpo-unet"
    snapshot = repo / "snapshots" / ("0" * 40)
    original.to(torch.float16).save_pretrained(snapshot / "unet", variant="fp16")
    original.to(torch.float32)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    assert [p.name for p in (snapshot / "unet").glob("*.safetensors")] == ["diffusion_pytorch_model.fp16.safetensors"]
    loaded = load_unet("someone/dpo-unet", cache_dir=tmp_path / "cache")
    assert loaded.dtype == torch.float32
    for name, weight in original.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], weight.to(torch.float16).to(torch.float32))

    original.save_pretrained(tmp_path / "plain")  # a folder with config.json at its top
    assert torch.equal(next(iter(load_unet(tmp_path / "plain").parameters())), next(iter(original.parameters())))
    with pytest.raises(
        ConfigError, match=r"(?s)U-Net .someone/other.: not a folder and not in the local .* hf download someone/other"
    ):
        load_unet("someone/other", cache_dir=tmp_path / "cache")
    with pytest.raises(InputError, match=r"holds no config.json \(nor unet/config.json\)"):
        load_unet(tmp_path / "cache")


def test_training_loads_the_base_without_its_safety_checker(tmp_path) -> None:  # noqa: ANN001
    """A full SD 1.5 download has a 1.2 GB safety checker: training kept it on every rank, and a
    training evaluation's images would come back blacked out wherever it fired."""
    from diffusers import StableDiffusionPipeline
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    from livo.train.trainer import load_frozen_model

    small = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 1}
    checker = StableDiffusionSafetyChecker(
        CLIPConfig(text_config=small, vision_config={**small, "image_size": 32, "patch_size": 4}, projection_dim=32)
    )
    components = tiny_components(seed=0) | {"safety_checker": checker, "feature_extractor": CLIPImageProcessor()}
    StableDiffusionPipeline(**components).save_pretrained(tmp_path / "base")
    assert load_base(tmp_path / "base").safety_checker is not None  # the folder has one
    assert load_frozen_model(str(tmp_path / "base"), None, "cpu").safety_checker is None
