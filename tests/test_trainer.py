"""The DeepSpeed trainer on CPU (gloo) with the shipped toy model and a handful of rendered pairs."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from livo.data.schema import PAIR_SCHEMA
from livo.data.shards import ShardWriter
from livo.errors import ConfigError, InputError
from livo.lr_schedule import lr_factor
from livo.runtime import QUIET_DEFAULTS, free_port
from livo.toyworld.pairs import PairsConfig, write_pairs
from livo.train import Trainer, config_from_dict, train
from livo.train.config import DEFAULT_DEEPSPEED, load_config
from livo.train.distributed import PROCESS_GROUP_VARIABLES

pytestmark = pytest.mark.usefixtures("torch_one_thread")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("pairs") / "toy"
    write_pairs(PairsConfig(output=str(folder), bias_per_subject=3, harm_per_prompt=1, seed=1, row_group_bytes=4096))
    return str(folder)


def settings(pairs: str, output: Path, **changes: object) -> dict:
    values = {
        "dataset": pairs,
        "output": str(output),
        "learning_rate": 1e-3,
        "micro_batch_size": 2,
        "max_steps": 4,
        "checkpoint_every": 2,
        "threads": 1,
        "progress": False,
        "shuffle_buffer": 16,
    }
    values.update(changes)
    return values


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


def changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> set[str]:
    return {name for name, tensor in module.state_dict().items() if not torch.equal(tensor, before[name])}


def test_one_deepspeed_step_changes_the_value_encoder_and_nothing_else(
    pairs: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from livo.train.distributed import PROCESS_GROUP_VARIABLES

    for name in PROCESS_GROUP_VARIABLES:  # no launcher: the trainer makes a one-process world
        monkeypatch.delenv(name, raising=False)
    trainer = Trainer(config_from_dict(settings(pairs, tmp_path / "run", max_steps=1, checkpoint_every=0)))
    assert (os.environ["RANK"], os.environ["WORLD_SIZE"]) == ("0", "1") and "MASTER_PORT" in os.environ
    frozen = {name: getattr(trainer.pipeline, name) for name in ("unet", "vae", "text_encoder")}
    before = {name: snapshot(module) for name, module in frozen.items()}
    encoder_before = snapshot(trainer.engine.module)
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}

    result = trainer.run()

    # The run's world variables are gone with the run: a process started now does not inherit the port.
    assert not set(PROCESS_GROUP_VARIABLES) & set(os.environ)
    assert type(trainer.engine).__name__ == "DeepSpeedEngine"
    assert all(not changed(before[name], module) for name, module in frozen.items())
    assert changed(encoder_before, trainer.engine.module) >= {n for n, _ in trainer.engine.module.named_parameters()}
    assert not any(p.requires_grad for module in frozen.values() for p in module.parameters())
    frozen_ids = {id(p) for module in frozen.values() for p in module.parameters()}
    assert not optimized & frozen_ids
    record = result.history[0]
    for key in (
        "loss",
        "err_theta_w",
        "err_ref_w",
        "err_theta_l",
        "err_ref_l",
        "hinge_w",
        "hinge_l",
        "implicit_acc",
        "lr",
        "pairs_per_s",
    ):
        assert key in record and record[key] == record[key], key
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1]
    assert (tmp_path / "run" / "metrics.csv").read_text().startswith("step,loss,")
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


def test_frozen_token_embeddings_stay_the_base_text_encoder_s_while_the_layers_train(
    pairs: str, tmp_path: Path
) -> None:
    trainer = Trainer(
        config_from_dict(
            settings(pairs, tmp_path / "run", max_steps=2, checkpoint_every=0, freeze_token_embeddings=True)
        )
    )
    encoder_before = snapshot(trainer.engine.module)
    embedding = trainer.engine.module.get_input_embeddings().weight
    # ZeRO flattens what it optimises: the flat partition holds every trainable value and no more.
    optimized = sum(p.numel() for group in trainer.optimizer.param_groups for p in group["params"])
    assert optimized == sum(p.numel() for p in trainer.objective.trainable_parameters())
    assert (
        not embedding.requires_grad
        and optimized == sum(p.numel() for p in trainer.engine.module.parameters()) - embedding.numel()
    )

    result = trainer.run()

    moved = changed(encoder_before, trainer.engine.module)
    assert "embeddings.token_embedding.weight" not in moved
    assert {"embeddings.position_embedding.weight", "final_layer_norm.weight"} <= moved
    assert torch.equal(embedding, trainer.pipeline.text_encoder.get_input_embeddings().weight)
    summary = json.loads((tmp_path / "run" / "run_summary.json").read_text())
    vocabulary, width = embedding.shape
    assert (
        summary["trainable_parameters"]
        == sum(p.numel() for p in trainer.engine.module.parameters()) - vocabulary * width
    )
    assert len(result.history) == 2


def test_frozen_token_embeddings_are_refused_for_dpo(pairs: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="freeze_token_embeddings applies to the LiVO value encoder only"):
        config_from_dict(settings(pairs, tmp_path, loss="dpo", freeze_token_embeddings=True))


def test_resumed_run_repeats_the_uninterrupted_loss_sequence(pairs: str, tmp_path: Path) -> None:
    # Start with no process-group variables, as a fresh notebook would (a Trainer made directly, as in
    # the tests before, leaves them set).
    for name in PROCESS_GROUP_VARIABLES:
        os.environ.pop(name, None)

    whole = train(config_from_dict(settings(pairs, tmp_path / "whole", max_steps=5)))
    first = train(config_from_dict(settings(pairs, tmp_path / "parts", max_steps=3, checkpoint_every=2)))
    second = train(config_from_dict(settings(pairs, tmp_path / "parts", max_steps=5, checkpoint_every=2)), resume=True)

    assert second.resumed_from == 2
    resumed = [r["loss"] for r in first.history[:2]] + [r["loss"] for r in second.history]
    assert resumed == [r["loss"] for r in whole.history]
    assert len(set(resumed)) > 1
    logged = [json.loads(line)["step"] for line in (tmp_path / "parts" / "metrics.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3, 4, 5]
    # Each in-process run removed its one-process world's variables again: a launcher the caller starts
    # next does not inherit a port this process holds.
    assert not [name for name in PROCESS_GROUP_VARIABLES if name in os.environ]

    # A resume that would train another module is refused before DeepSpeed reads the checkpoint.
    other = config_from_dict(settings(pairs, tmp_path / "parts", max_steps=6, freeze_token_embeddings=True))
    with pytest.raises(ConfigError, match=r"step4 was written with freeze_token_embeddings=False \(this run: True\)"):
        train(other, resume=True)
    # So is one with another learning rate: DeepSpeed would restore the checkpoint's and train with it.
    slower = config_from_dict(settings(pairs, tmp_path / "parts", max_steps=6, learning_rate=5e-4))
    with pytest.raises(ConfigError, match=r"learning_rate=0.001 \(this run: 0.0005\); the optimizer"):
        train(slower, resume=True)

    # The resumed run's clock goes on from the checkpoint's (it restarted at 0).
    assert second.history[0]["elapsed_s"] > first.history[1]["elapsed_s"]
    # A damaged trainer state is named, not a JSON traceback.
    state = tmp_path / "parts" / "checkpoints" / "step4" / "trainer_state_rank0.json"
    state.write_text(state.read_text()[:50])
    with pytest.raises(InputError, match=r"step4: trainer_state_rank0.json is damaged"):
        train(config_from_dict(settings(pairs, tmp_path / "parts", max_steps=6)), resume=True)


def test_a_resumed_run_follows_its_own_schedule_from_its_first_step(pairs: str, tmp_path: Path) -> None:
    """A run of 4 steps with linear decay, continued to 6: the checkpoint held the old schedule's
    rate (0 at its end), which the first resumed step used before the new schedule took over."""
    run = tmp_path / "run"
    train(config_from_dict(settings(pairs, run, max_steps=4, lr_scheduler="linear")))
    resumed = train(config_from_dict(settings(pairs, run, max_steps=6, lr_scheduler="linear")), resume=True)
    assert resumed.resumed_from == 4
    assert [r["lr"] for r in resumed.history] == pytest.approx([1e-3 * (1 - 4 / 6), 1e-3 * (1 - 5 / 6)])


def test_a_final_evaluation_runs_without_periodic_ones(pairs: str, tmp_path: Path) -> None:
    evaluation = {"hook": "toyworld", "every": 0, "final": True, "per_prompt": 1, "steps": 2}
    result = train(config_from_dict(settings(pairs, tmp_path / "run", max_steps=2, eval=evaluation)))
    assert [e["step"] for e in result.evaluations] == [2]
    logged = [json.loads(line) for line in (tmp_path / "run" / "eval.jsonl").read_text().splitlines()]
    assert [record["step"] for record in logged] == [2] and "d1_people" in logged[0]


def test_exported_value_encoder_loads_in_livo_pipeline(pairs: str, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from livo.models import LiVOPipeline, ValueChoice

    trainer = Trainer(
        config_from_dict(settings(pairs, tmp_path / "run", max_steps=2, checkpoint_every=0, export_steps=[5, 1, 2]))
    )
    result = trainer.run()
    assert result.export == tmp_path / "run" / "value_encoder"
    assert (result.export / "model.safetensors").is_file()
    # The weights at each export step (a step past max_steps is left for a longer, resumed run).
    exports = tmp_path / "run" / "exports"
    assert sorted(p.name for p in exports.iterdir()) == ["step1", "step2"]
    weights = {step: load_file(exports / step / "value_encoder" / "model.safetensors") for step in ("step1", "step2")}
    final = load_file(result.export / "model.safetensors")
    assert all(torch.equal(weights["step2"][k], final[k]) for k in final)
    assert any(not torch.equal(weights["step1"][k], final[k]) for k in final)

    pipeline = LiVOPipeline.from_pretrained("builtin:toyworld", value_encoder_path=result.export)
    tokenizer = pipeline.base.tokenizer
    with torch.no_grad():
        loaded = pipeline.value_encoder.encode_values(tokenizer, ["no blood"], ["a bloody ball"])
        trained = trainer.engine.module.eval().encode_values(tokenizer, ["no blood"], ["a bloody ball"])
    torch.testing.assert_close(loaded, trained)
    out = pipeline(
        ["a bloody ball"],
        num_images_per_prompt=2,
        selector=lambda p: ValueChoice("no_blood", "no blood", "harm"),
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    )
    assert out.values == [ValueChoice("no_blood", "no blood", "harm")] * 2 and out.images.shape == (2, 16, 16, 3)


def test_dpo_lora_step_trains_only_the_adapters(pairs: str, tmp_path: Path) -> None:
    trainer = Trainer(
        config_from_dict(settings(pairs, tmp_path / "dpo", loss="dpo", beta_dpo=500.0, max_steps=1, checkpoint_every=0))
    )
    unet = trainer.pipeline.unet
    before = snapshot(unet)
    result = trainer.run()
    moved = changed(before, unet)
    assert moved and all("lora" in name for name in moved)
    assert "logit" in result.history[0]
    assert (tmp_path / "dpo" / "unet_lora" / "pytorch_lora_weights.safetensors").is_file()


def test_cosine_schedule_warms_up_then_decays_to_zero(pairs: str, tmp_path: Path) -> None:
    result = train(
        config_from_dict(
            settings(pairs, tmp_path / "cos", max_steps=5, checkpoint_every=0, warmup_steps=1, lr_scheduler="cosine")
        )
    )
    logged = [record["lr"] for record in result.history]
    assert logged == pytest.approx(
        [1e-3, 1e-3, 0.5e-3 * (1 + math.cos(math.pi / 4)), 0.5e-3, 0.5e-3 * (1 - math.cos(math.pi / 4))]
    )
    assert lr_factor("linear", 0, 10, 5) == 0.5 and lr_factor("constant", 2, 10, 9) == 1.0
    assert lr_factor("cosine", 0, 10, 10) == 0.0 and lr_factor("linear", 4, 10, 1) == 0.5
    with pytest.raises(ConfigError, match="field lr_scheduler: Input should be 'constant', 'linear' or 'cosine'"):
        config_from_dict(settings(pairs, tmp_path, lr_scheduler="step"))


def test_two_processes_train_with_gloo_each_reading_as_its_rank(pairs: str, tmp_path: Path) -> None:
    """Each rank's data stream has the launcher's rank and world size (that a rank's part of the
    shards is disjoint from the others': test_streaming.py)."""
    config = tmp_path / "two.yaml"
    config.write_text(json.dumps(settings(pairs, tmp_path / "two", max_steps=2, checkpoint_every=2, threads=1)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # The launcher starts ranks as a user's shell would: the quiet settings come from livo itself.
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "DS_ACCELERATOR", *QUIET_DEFAULTS):
        env.pop(name, None)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
        "-m",
        "livo.train",
        str(config),
    ]
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    states = [
        json.loads((tmp_path / "two" / "checkpoints" / "step2" / f"trainer_state_rank{r}.json").read_text())
        for r in (0, 1)
    ]
    assert [s["data"]["world_size"] for s in states] == [2, 2]
    assert [s["data"]["rank"] for s in states] == [0, 1]
    assert [s["data"]["delivered"] for s in states] == [2, 2]
    assert (tmp_path / "two" / "value_encoder" / "model.safetensors").is_file()
    output = done.stdout + done.stderr  # quiet by default: none of the third-party notices a user cannot act on
    for noise in (
        "requires torchvision",
        "Setting accelerator to",
        "built successfully",
        "Loading pipeline components",
    ):
        assert noise not in output, output[-3000:]


RANK_RECORD = """
import json, sys, torch, torch.distributed as dist
from livo.train.trainer import _scalar_record

def main(rank, init):
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    parts = [{"loss": torch.tensor(rank + 1.0)}, {"loss": torch.tensor(3.0 * (rank + 1))}]
    record = _scalar_record(1, parts, 1e-3, 1.0, 8, 1.0, torch.device("cpu"))
    if rank == 0:
        print(json.dumps(record))
    dist.destroy_process_group()

if __name__ == "__main__":
    torch.multiprocessing.spawn(main, args=(sys.argv[1],), nprocs=2)
"""


def test_a_multi_rank_step_logs_the_loss_over_all_ranks(tmp_path: Path) -> None:
    """Each rank's micro-batches differ; the logged loss was rank 0's alone (2.0 here), beside a
    pairs_per_s over all ranks. Two real gloo ranks: (1 + 3) / 2 and (2 + 6) / 2, averaged: 3.0."""
    script = tmp_path / "ranks.py"
    script.write_text(RANK_RECORD)
    done = subprocess.run(
        [sys.executable, str(script), f"file://{tmp_path / 'store'}"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(done.stdout.strip().splitlines()[-1])
    assert record["loss"] == pytest.approx(3.0)


def test_a_rank_that_stops_answering_fails_the_others_after_the_collective_timeout(pairs: str, tmp_path: Path) -> None:
    """A peer frozen mid-run (SIGSTOP: its connections stay open, as with a node cut off the network)
    must not hold the other rank for torch's 30 minutes: rank 0 stops after collective_timeout_s."""
    import signal
    import time

    run = tmp_path / "run"
    config = tmp_path / "frozen.yaml"
    config.write_text(
        json.dumps(settings(pairs, run, max_steps=10_000, collective_timeout_s=3, tensorboard=False, threads=1))
    )
    port = str(free_port())
    ranks = []
    for rank in (0, 1):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
        env.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2")
        log = (tmp_path / f"rank{rank}.log").open("w")
        command = [sys.executable, "-m", "livo.train", str(config)]
        ranks.append(subprocess.Popen(command, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT))
    try:
        deadline = time.monotonic() + 180
        while not (run / "checkpoints" / "latest").exists():  # both ranks are training
            assert time.monotonic() < deadline and ranks[0].poll() is None, (tmp_path / "rank0.log").read_text()
            time.sleep(0.05)
        ranks[1].send_signal(signal.SIGSTOP)
        frozen = time.monotonic()
        assert ranks[0].wait(timeout=120) == 2
        waited = time.monotonic() - frozen
    finally:
        for process in ranks:
            process.kill()
            process.wait()
    assert waited < 30, waited  # (rank 0 may have been waiting already when rank 1 was frozen)
    log = (tmp_path / "rank0.log").read_text()
    assert "livo train: error: rank 0 waited more than collective_timeout_s=3 s for the other ranks" in log, log[-3000:]
    assert "--resume" in log


def test_unknown_loss_is_refused_naming_the_field(pairs: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="field loss: Input should be 'livo' or 'dpo'"):
        config_from_dict(settings(pairs, tmp_path, loss="kto"))


def test_missing_dataset_is_refused_before_loading_models(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such folder"):
        config_from_dict(settings(str(tmp_path / "absent"), tmp_path))


def test_empty_shards_are_refused(tmp_path: Path) -> None:
    with ShardWriter(tmp_path / "empty", schema=PAIR_SCHEMA):
        pass
    with pytest.raises(InputError, match="split 'train' has no rows"):
        config_from_dict(settings(str(tmp_path / "empty"), tmp_path))


def _png(pixels: object) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_pair_rows_other_tools_write_are_read_right_or_named() -> None:
    """A 16-bit PNG trained as a white image; value_texts given as a string trained as one value
    per letter, and a null one as the text "None"; a bad image, a Hugging Face image record or two
    sizes in one pair were tracebacks naming no pair, hours into a run."""
    import numpy as np

    from livo.train.pairs_input import collate_pairs

    grey = np.full((4, 4), 0x8000, np.uint16)
    rgb = np.zeros((4, 4, 3), np.uint8)
    good = {
        "prompt": "a doctor",
        "value_texts": ["balance colour"],
        "aligned_image": _png(rgb),
        "violating_image": _png(rgb),
    }
    batch = collate_pairs([{**good, "aligned_image": _png(grey)}])  # uint16: Pillow's mode I;16
    assert torch.allclose(batch.aligned, torch.full_like(batch.aligned, 128 / 127.5 - 1), atol=1e-6)  # not 1.0
    for change, message in [
        ({"value_texts": "no blood"}, r"pair 'a doctor': value_texts is 'no blood'; it must be a list"),
        ({"value_texts": [None]}, r"value_texts \[None\] holds an empty or non-text value"),
        ({"value_texts": []}, r"value_texts is \[\]"),
        ({"prompt": None}, r"a pair: prompt is None, not a text"),
        ({"value_texts": None}, r"value_texts is None; it must be a list"),
        ({"aligned_image": _png(rgb)[:40]}, r"pair 'a doctor': aligned_image cannot be read as an image"),
        ({"violating_image": b""}, r"violating_image is an empty value, not image bytes"),
        ({"aligned_image": {"bytes": _png(rgb), "path": None}}, r"aligned_image is a dict, not image bytes"),
        ({"violating_image": _png(np.zeros((8, 8, 3), np.uint8))}, r"aligned_image is 4x4 and violating_image 8x8"),
    ]:
        with pytest.raises(InputError, match=message):
            collate_pairs([{**good, **change}])
    version_1 = {key: value for key, value in good.items() if key != "value_texts"}  # one value_text
    assert collate_pairs([{**version_1, "value_text": "no blood"}]).values == ["no blood"]
    with pytest.raises(InputError, match=r"pair 'a doctor': value_text is None, not a value text"):
        collate_pairs([{**version_1, "value_text": None}])
    bigger = {
        **good,
        "aligned_image": _png(np.zeros((8, 8, 3), np.uint8)),
        "violating_image": _png(np.zeros((8, 8, 3), np.uint8)),
    }
    with pytest.raises(InputError, match=r"images of different sizes \(4x4, 8x8\)"):
        collate_pairs([good, bigger])


def test_fit_to_square_resizes_the_shorter_side_and_crops_the_centre() -> None:
    import numpy as np

    from livo.train.pairs_input import fit_to_square

    # 60 wide, 30 high, each column's value its x: shorter side 30 -> 10, so 60 -> 20, then the middle
    # 10 columns of 20 (5 to 14), which hold the original's columns 15 to 44.
    columns = np.tile(np.arange(60, dtype=np.uint8)[None, :, None] * 4, (30, 1, 3))
    fitted = fit_to_square(columns, 10)
    assert fitted.shape == (10, 10, 3)
    middle = fitted[5, :, 0].astype(int) // 4
    assert 14 <= middle[0] <= 18 and 41 <= middle[-1] <= 45 and list(middle) == sorted(middle)
    tall = fit_to_square(np.ascontiguousarray(columns.transpose(1, 0, 2)), 10)  # 30 wide, 60 high
    assert tall.shape == (10, 10, 3)
    same = np.random.default_rng(0).integers(0, 256, (10, 10, 3), dtype=np.uint8)
    assert np.array_equal(fit_to_square(same, 10), same)  # already the square: untouched


def test_a_dataset_of_several_image_sizes_trains_with_a_resolution(pairs: str, tmp_path: Path) -> None:
    """Datasets of other tools hold images of several sizes (each batch is one): without a
    resolution that is an error saying to set one; with it every image is resized and cropped to
    it, as diffusers' training scripts do."""
    import io

    import pyarrow.parquet as pq
    from PIL import Image

    from livo.data.schema import pair_table
    from livo.data.shards import Manifest, write_shards

    manifest = Manifest.load(pairs)
    rows = pq.read_table(manifest.directory / manifest.shards_of("train")[0].name).to_pylist()[:8]
    sizes = [(48, 40), (40, 64), (32, 32), (64, 48)]
    for i, row in enumerate(rows):
        for column in ("aligned_image", "violating_image"):
            image = Image.open(io.BytesIO(row[column])).resize(sizes[i % len(sizes)])
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG" if i % 2 else "PNG")  # Pick-a-Pic-like: JPEG among PNG
            row[column] = buffer.getvalue()
    write_shards(tmp_path / "mixed", pair_table(rows))
    base = settings(str(tmp_path / "mixed"), tmp_path / "run", max_steps=2, checkpoint_every=0, shuffle_buffer=4)
    base["eval"] = {"every": 0, "final": False}
    with pytest.raises(InputError, match=r"images of different sizes .* or set resolution"):
        train(config_from_dict(base))
    result = train(config_from_dict({**base, "output": str(tmp_path / "run2"), "resolution": 32}))
    assert result.steps == 2 and all(record["loss"] == record["loss"] for record in result.history)


def test_a_dataset_without_the_columns_training_reads_is_refused_before_loading_models(tmp_path: Path) -> None:
    import pyarrow as pa

    from livo.data.shards import write_shards

    # Version 1's columns under a manifest that says livo.pair/2 (`livo shards write` without --pair-schema).
    table = pa.table(
        {
            "record_id": ["r1"],
            "prompt": ["a doctor"],
            "value_text": ["x"],
            "cluster_id": [0],
            "aligned_image": [b"png"],
            "violating_image": [b"png"],
        }
    )
    write_shards(tmp_path / "v1-columns", table)
    with pytest.raises(InputError, match=r"has no value_texts column; training reads prompt, value_texts"):
        config_from_dict(settings(str(tmp_path / "v1-columns"), tmp_path / "out"))


def test_unknown_key_and_cli_errors_are_clear(pairs: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from livo.cli import main

    with pytest.raises(ConfigError, match="field learning_rte: Extra inputs are not permitted"):
        config_from_dict(settings(pairs, tmp_path, learning_rte=1e-3))
    with pytest.raises(ConfigError, match=r"field export_steps: .*a step is given twice: \[2, 2\]"):
        config_from_dict(settings(pairs, tmp_path, export_steps=[2, 2]))
    with pytest.raises(ConfigError, match=r"field export_steps: .*counted from 1"):
        config_from_dict(settings(pairs, tmp_path, export_steps=[0, 5]))
    config = tmp_path / "bad.yaml"
    config.write_text(f"dataset: {pairs}\noutput: {tmp_path}\nloss: ppo\n")
    assert main(["train", str(config)]) == 2
    assert "bad.yaml: field loss: Input should be 'livo' or 'dpo'" in capsys.readouterr().err


def test_shipped_zero2_file_matches_the_built_in_default(pairs: str, tmp_path: Path) -> None:
    shipped = REPO / "services" / "train" / "ds_zero2.json"
    assert json.loads(shipped.read_text()) == DEFAULT_DEEPSPEED
    for name in ("toyworld_livo.yaml", "toyworld_dpo.yaml", "sd15_livo.yaml", "sd15_dpo.yaml"):
        config = load_config(REPO / "services" / "train" / name, {"dataset": pairs, "output": str(tmp_path)})
        assert config.deepspeed_config == str(shipped)


def test_exponent_floats_are_read_and_wrong_types_named(pairs: str, tmp_path: Path) -> None:
    # YAML 1.1 read "1e-6" (no dot) as a string; a learning rate written that way must work.
    config = tmp_path / "lr.yaml"
    config.write_text(f"dataset: {pairs}\noutput: {tmp_path}\nlearning_rate: 1e-6\nbeta: 100\n")
    loaded = load_config(config, {"learning_rate": "2e-3", "eval.per_prompt": 4})
    assert loaded.learning_rate == 2e-3 and loaded.beta == 100.0 and loaded.eval.per_prompt == 4
    with pytest.raises(ConfigError, match="lr.yaml: field learning_rate: Input should be a valid number"):
        load_config(config, {"learning_rate": "fast"})
    with pytest.raises(
        ConfigError,
        match="lr.yaml: field eval.per_prompt: Input should be a valid integer, got a number with a fractional part",
    ):
        load_config(config, {"eval.per_prompt": 2.5})
    with pytest.raises(ConfigError, match="lr.yaml: field tensorboard: Input should be a valid boolean"):
        load_config(config, {"tensorboard": "yes please"})
