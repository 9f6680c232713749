"""A build killed with SIGKILL in the middle resumes: finished shards stay as they are, their
records are not generated again, and every record ends up exactly once (stored or dropped).

The killed job is a separate driver process joined to the session's local Ray (as a job joins a
cluster): killing it takes its actors down with it, like a killed ``ray job``."""

import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from livo.data.shards import Manifest, verify_shards
from livo.dataset import build_dataset, load_build_config
from livo.dataset.sink import read_ledger

CONFIG = """
sources: {{generators: {{toyworld: {{count: 300, seed: 5}}}}}}
selection: {{registry: toyworld}}
generation: {{steps: 4, guidance_scale: 5.0, samples_per_prompt: 1, value_samples: {{colour_equality: 4}},
             batch_size: 4, actors: 1}}
output: {{directory: {output}, target_shard_bytes: 4096, row_group_bytes: 2048, checkpoint_seconds: 1}}
progress: false
"""


def committed_shards(directory):
    try:
        return {s.name: s.blake3 for s in Manifest.load(directory).shards}
    except FileNotFoundError:
        return {}


@pytest.mark.timeout(400)
def test_a_killed_build_resumes_without_regenerating_finished_shards(tmp_path, ray_local):
    output = tmp_path / "pairs"
    config_path = tmp_path / "build.yaml"
    config_path.write_text(CONFIG.format(output=output))
    log = open(tmp_path / "job.log", "w")
    address = ray_local.get_runtime_context().gcs_address
    job = subprocess.Popen(
        [sys.executable, "-m", "livo.cli", "build-dataset", str(config_path), "--address", address],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not committed_shards(output):
            assert job.poll() is None, (tmp_path / "job.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the build committed no shard in time"
            time.sleep(0.2)
    finally:
        os.killpg(job.pid, signal.SIGKILL)  # the job's process group: its driver
        job.wait()
    before = committed_shards(output)
    assert before and not (output / "build" / "report.json").exists()  # killed mid-run, not finished

    report = build_dataset(load_build_config(config_path))
    planned = report.stages["plan"]["records"]
    after = committed_shards(output)
    assert all(after.get(name) == digest for name, digest in before.items())  # finished shards untouched
    assert report.skipped_stored >= sum(pq.read_metadata(output / n).num_rows for n in before) > 0
    assert report.generated == planned - report.skipped_stored - report.skipped_dropped < planned
    ids = [
        i
        for path in Manifest.load(output).files()
        for i in pq.read_table(path, columns=["record_id"]).column("record_id").to_pylist()
    ]
    dropped = read_ledger(output)
    assert len(ids) == len(set(ids)) and not set(ids) & set(dropped)
    assert len(ids) + len(dropped) == planned
    assert verify_shards(output).ok
