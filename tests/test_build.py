"""Dataset construction on the toy world with real local Ray: an end-to-end build whose pairs pass
the judges, resuming, and losing an actor mid-run."""

import json
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

from livo.data.shards import Manifest, verify_shards
from livo.dataset import build_dataset, parse_build_config, seed_of
from livo.dataset.sink import read_ledger
from livo.toyworld.judge import ToyWorldJudge
from livo.values.registry import builtin_registry_path, load_registry

TOY = load_registry(builtin_registry_path("toyworld"))


def toy_config(output, **generation):
    settings = {
        "steps": 4,
        "guidance_scale": 5.0,
        "samples_per_prompt": 1,
        "batch_size": 8,
        "actors": 2,
        "value_samples": {"colour_equality": 3},
    }
    settings.update(generation)
    return parse_build_config(
        {
            "sources": {"generators": {"toyworld": {"count": 200, "seed": 3}}},
            "selection": {"registry": "toyworld"},
            "generation": settings,
            "output": {"directory": str(output), "target_shard_bytes": 8192, "row_group_bytes": 4096},
            "progress": False,
        }
    )


def read_pairs(directory):
    manifest = Manifest.load(directory)
    return [row for path in manifest.files() for row in pq.read_table(path).to_pylist()]


def decode(png):
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def assert_pairs_pass_the_judges(rows):
    judge = ToyWorldJudge()
    for row in rows:
        value = TOY.value(row["value_id"])
        images = np.stack([decode(row["violating_image"]), decode(row["aligned_image"])])
        violating, aligned = judge.judge(images, [row["prompt"]] * 2, value)
        if value.kind == "bias":
            assert violating.attribute is not None and aligned.attribute != violating.attribute
            assert aligned.attribute in row["aligned_prompt"].split()
        else:
            assert violating.harmful and not aligned.harmful
        assert aligned.subject, row["prompt"]
        assert row["seed"] == seed_of(row["record_id"])


@pytest.mark.timeout(300)
def test_toy_build_writes_verified_pairs_that_pass_the_judges_and_resumes(tmp_path, ray_local):
    config = toy_config(tmp_path / "pairs")
    report = build_dataset(config)
    planned = report.stages["plan"]["records"]
    assert report.verified and verify_shards(tmp_path / "pairs").ok
    assert (
        report.generated
        == planned
        == report.kept + sum(n for reason, n in report.drops.items() if reason.startswith(("violating", "aligned")))
    )
    rows = read_pairs(tmp_path / "pairs")
    ids = [r["record_id"] for r in rows]
    assert len(rows) == report.kept == report.dataset_rows and len(set(ids)) == len(ids)
    assert set(report.pairs_per_value) == {"colour_equality", "no_blood", "no_zombie"}
    assert report.pairs_per_category.keys() == {"bias/colour", "toxicity/bloody", "toxicity/zombie"}
    assert report.stages["dedup"]["unique"] < report.stages["sources"]["toyworld"]
    assert report.drops["no_value"] > 0 and report.drops["duplicate_prompt"] > 0
    # Toy prompts with a harm and a person ("a bloody nurse") get both values; the pair is for the harm.
    assert report.stages["selection"]["several_values"] > 0
    assert_pairs_pass_the_judges(rows)
    saved = json.loads((tmp_path / "pairs" / "build" / "report.json").read_text())
    assert saved["kept"] == report.kept and saved["drops"] == report.drops
    text = report.format()
    assert "images/s" in text
    # Prompts the plan dropped are on the plan's line; the judge's lines count generated pairs only.
    plan_line = next(line for line in text.splitlines() if line.startswith("  plan "))
    assert f"no_value {report.drops['no_value']}" in plan_line and "duplicate_prompt" in plan_line
    assert f"kept {report.kept} of {report.generated} pairs" in text
    judged = [line.split()[1].rstrip(":") for line in text.splitlines() if line.startswith("    dropped  ")]
    assert all(reason.startswith(("violating", "aligned")) for reason in judged), judged

    again = build_dataset(config)
    assert again.generated == 0 and again.skipped_stored == len(rows)
    assert again.skipped_stored + again.skipped_dropped == planned
    assert again.dataset_rows == len(rows)


@pytest.mark.timeout(300)
def test_killing_an_actor_mid_run_still_yields_every_record_once(tmp_path, ray_local):
    import ray

    seen = {}

    def kill_first_actor(result, actors):
        if "pid" in seen:
            return
        seen["pid"] = ray.get(actors[0].ready.remote())
        ray.kill(actors[0], no_restart=False)
        # ray.kill is asynchronous: a call made at once may still reach the dying process, so ask
        # until a new process answers (bounded), while the pool's other results wait for this callback.
        deadline = time.monotonic() + 60
        seen["restarted"] = seen["pid"]
        while seen["restarted"] == seen["pid"] and time.monotonic() < deadline:
            time.sleep(0.2)
            seen["restarted"] = ray.get(actors[0].ready.remote(), timeout=60)

    config = toy_config(tmp_path / "pairs", batch_size=4, value_samples={"colour_equality": 2})
    report = build_dataset(config, on_result=kill_first_actor)
    assert seen["restarted"] != seen["pid"]  # the actor really died and Ray started a new one
    rows = read_pairs(tmp_path / "pairs")
    ids = [r["record_id"] for r in rows]
    dropped = read_ledger(tmp_path / "pairs")
    assert len(ids) == len(set(ids)) and not set(ids) & set(dropped)
    assert len(ids) + len(dropped) == report.stages["plan"]["records"] == report.generated
    assert report.verified


def test_results_are_written_in_batch_order_whichever_actor_finishes_first(ray_local, tmp_path):
    from livo.dataset.execute import run_actor_pool

    class UnevenActor:
        """A real Ray actor with the generator's interface whose even batches take longer than odd
        ones, so results arrive out of batch order; a batch holding ``fail_once`` fails the first time
        any actor runs it (the marker file says it did). Defined here so Ray ships it by value."""

        def generate(self, batch: int, records: list) -> object:
            import time
            from pathlib import Path

            from livo.dataset.generate import BatchResult

            marker = records[0].get("fail_once")
            if marker and not Path(marker).exists():
                Path(marker).touch()
                raise RuntimeError(f"batch {batch} fails once")
            time.sleep(0.15 if batch % 2 == 0 else 0.01)
            return BatchResult(batch=batch, images=len(records))

    actor = ray_local.remote(UnevenActor).options(num_cpus=0)
    batches = [[{"i": i, "fail_once": str(tmp_path / "failed") if i == 3 else None}] for i in range(12)]
    arrived, written = [], []
    stats = run_actor_pool(
        [actor.remote() for _ in range(3)],
        batches,
        lambda result: written.append(result.batch),
        on_result=lambda result, actors: arrived.append(result.batch),
        lookahead=4,
    )
    assert arrived != sorted(arrived)  # the actors did finish out of order
    # in order, except the batch that failed: it is re-run after its round
    assert written == [0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 3]
    assert stats.batches == 12 and stats.retried_batches == 1 and len(stats.failures) == 1
