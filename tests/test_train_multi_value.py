"""Training on records with several values: the trainer gives a record one value token per value,
exactly the conditioning the pipeline builds at inference, and still reads ``livo.pair/1`` data."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
import torch

from livo.data.schema import PAIR_SCHEMA_VERSION_1
from livo.data.shards import ShardConfig, ShardWriter
from livo.errors import InputError
from livo.toyworld.pairs import PairsConfig, pair_records, write_pairs
from livo.train import Trainer, config_from_dict, train
from livo.train.pairs_input import PairBatch

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def settings(dataset: str, output: Path, **changes: object) -> dict:
    return {
        "dataset": dataset,
        "output": str(output),
        "learning_rate": 1e-3,
        "micro_batch_size": 4,
        "max_steps": 2,
        "checkpoint_every": 0,
        "threads": 1,
        "progress": False,
        "shuffle_buffer": 16,
        **changes,
    }


@pytest.fixture(scope="module")
def double_pairs(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("pairs") / "double"
    write_pairs(
        PairsConfig(
            output=str(folder), bias_per_subject=2, harm_per_prompt=0, double_per_prompt=2, row_group_bytes=4096
        )
    )
    return str(folder)


def test_rows_with_two_values_get_the_pipelines_two_token_conditioning_and_train(
    double_pairs: str, tmp_path: Path
) -> None:
    from livo.models.conditioning import reference_conditioning, value_conditioning

    trainer = Trainer(config_from_dict(settings(double_pairs, tmp_path / "run")))
    pipe, encoder = trainer.pipeline, trainer.objective.module
    prompts = ["a bloody nurse", "a doctor", "a zombie teacher"]
    lists = [("no blood", "balance colour"), ("balance colour",), ("no zombie", "balance colour")]
    pixels = torch.zeros(3, 3, 32, 32)
    batch = PairBatch(prompts, [t[0] for t in lists], pixels, pixels, value_lists=lists)
    c_ref = reference_conditioning(pipe.text_encoder, pipe.tokenizer, prompts)
    with torch.no_grad():
        trained = trainer.objective.value_conditioning(trainer.engine, batch, c_ref)
        for row, (prompt, values) in enumerate(zip(prompts, lists)):
            at_inference = value_conditioning(encoder, pipe.text_encoder, pipe.tokenizer, [list(values)], [prompt])
            torch.testing.assert_close(trained[row], at_inference.c_theta[0], rtol=0, atol=1e-6)
    assert trained.shape[1] == pipe.tokenizer.model_max_length
    # A record with more values than the prompt has room for (L - 2 = 10 here) is named.
    many = tuple(
        f"no harm {word}"
        for word in ("blood", "gore", "horror", "zombie", "a", "an", "safe", "fair", "equal", "people", "person")
    )
    crowded = PairBatch(["a nurse"], [many[0]], pixels[:1], pixels[:1], value_lists=[many])
    with pytest.raises(
        InputError, match=r"the pair for 'a nurse' has 11 values \(no harm blood; .*room for 10 value tokens"
    ):
        trainer.objective.value_conditioning(trainer.engine, crowded, c_ref[:1])

    result = trainer.run()  # batches of the double-value dataset, read from its shards
    assert len(result.history) == 2 and all(r["loss"] == r["loss"] for r in result.history)
    assert (tmp_path / "run" / "value_encoder" / "model.safetensors").exists()


def test_a_version_1_dataset_still_trains_with_one_value_per_record(tmp_path: Path) -> None:
    records = list(pair_records(PairsConfig(output="unused", bias_per_subject=3, harm_per_prompt=1, seed=1)))
    table = pa.Table.from_pylist(
        [{k: v for k, v in r.items() if k not in ("value_ids", "value_texts")} for r in records]
    )
    folder = tmp_path / "v1"
    config = ShardConfig(splits={"train": 1.0}, row_group_bytes=4096, schema_version=PAIR_SCHEMA_VERSION_1)
    with ShardWriter(folder, config) as writer:
        writer.write(table)
    result = train(config_from_dict(settings(str(folder), tmp_path / "run")))
    assert len(result.history) == 2 and all(r["loss"] == r["loss"] for r in result.history)
