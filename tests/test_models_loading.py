"""load_base: local folders load, a missing hub model fails fast with instructions."""

import time

import pytest
import torch

from livo.errors import ConfigError, InputError
from livo.models import load_base, tiny_components


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
    with pytest.raises(InputError, match="does not exist"):
        load_base(tmp_path / "missing")
