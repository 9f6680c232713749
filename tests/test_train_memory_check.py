"""The trainer's memory check: a rank's need measured before the optimizer allocates, and a run that
cannot fit refused with the figures instead of being killed by the OOM killer."""

from __future__ import annotations

from pathlib import Path

import pytest

from livo.errors import ConfigError
from livo.toyworld.pairs import PairsConfig, write_pairs
from livo.train import Trainer, config_from_dict
from livo.train.memory_check import GIB, bucket_elements, optimizer_bytes

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("pairs") / "toy"
    write_pairs(PairsConfig(output=str(folder), bias_per_subject=1, harm_per_prompt=1, seed=2, row_group_bytes=4096))
    return str(folder)


def settings(pairs: str, output: Path, **changes: object) -> dict:
    values = {"dataset": pairs, "output": str(output), "micro_batch_size": 2, "max_steps": 1, "threads": 1}
    return values | {"progress": False, "checkpoint_every": 0, "tensorboard": False} | changes


def test_the_need_is_measured_part_by_part_and_a_run_that_fits_trains(pairs: str, tmp_path: Path) -> None:
    trainer = Trainer(config_from_dict(settings(pairs, tmp_path / "run")))
    need = trainer.memory_need
    trainable = sum(p.numel() for p in trainer.objective.trainable_parameters())
    assert need.parts["gradients"] == 4 * trainable
    assert need.parts["Adam moments"] == 8 * trainable
    assert need.parts["resident weights"] > 50 * 2**20  # a Python process with torch and the model loaded
    assert need.parts["activations"] > 0
    assert need.total < need.available
    assert trainer.run().steps == 1


def test_a_run_that_cannot_fit_is_refused_with_the_need_and_the_available_memory(pairs: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        Trainer(config_from_dict(settings(pairs, tmp_path / "run", memory_budget_gib=0.01)))
    message = str(refused.value)
    assert "does not fit in memory" in message and "GiB per rank" in message
    assert "0.01 GiB available (memory_budget_gib)" in message
    assert "activations" in message and "Adam moments" in message
    assert "micro_batch_size" in message  # micro-batch 2: the first thing to lower
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_activations_are_the_bytes_saved_for_backward_and_grow_with_the_micro_batch(pairs: str, tmp_path: Path) -> None:
    one = Trainer(config_from_dict(settings(pairs, tmp_path / "one", micro_batch_size=1))).memory_need
    four = Trainer(config_from_dict(settings(pairs, tmp_path / "four", micro_batch_size=4))).memory_need
    assert one.parts["activations"] > 0
    assert four.parts["activations"] == 4 * one.parts["activations"]  # the same probe, every run


def test_zero2_splits_the_optimizer_state_over_ranks_and_mixed_precision_adds_master_weights() -> None:
    one = optimizer_bytes(1_000_000, world=1, mixed_precision=False)
    two = optimizer_bytes(1_000_000, world=2, mixed_precision=True, bucket_elements=100_000)
    assert one == {
        "gradients": 4_000_000,
        "Adam moments": 8_000_000,
        "fp32 parameter partition": 4_000_000,
        "fp32 gradient partition": 4_000_000,
    }
    assert two["Adam moments"] == 4_000_000 and two["fp32 master weights"] == 2_000_000
    assert two["gradients"] == 4_000_000 and two["fp32 gradient partition"] == 2_000_000
    assert two["DeepSpeed buckets"] == 400_000
    assert bucket_elements({"zero_optimization": {"reduce_bucket_size": 3, "allgather_bucket_size": 4}}) == 7
    assert bucket_elements({}) == 1_000_000_000  # DeepSpeed's own defaults
    assert GIB == 2**30


def test_the_ranks_sharing_a_host_are_read_from_torchrun_or_the_deepspeed_launcher(monkeypatch) -> None:
    """The deepspeed launcher sets LOCAL_SIZE, not LOCAL_WORLD_SIZE: each of its ranks took the whole
    host's free memory as its own."""
    from livo.train.memory_check import ranks_on_this_host

    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.delenv("LOCAL_SIZE", raising=False)
    assert ranks_on_this_host() == 1
    monkeypatch.setenv("LOCAL_SIZE", "4")
    assert ranks_on_this_host() == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert ranks_on_this_host() == 2
