"""Finished stages of a distributed job, kept on shared storage so that a rerun resumes after them.

Ray re-runs a task lost with its worker, but not a job whose driver is lost: the datasets a stage
built live in the object store and go with it. A job that checkpoints its stages here writes each
stage's datasets as Parquet under a work folder beside its output, then the stage's facts as a JSON
marker; a rerun of the same job (the same inputs, unchanged, and the same settings: the
*fingerprint*) reads the stages whose marker exists and computes the rest. A stage cut off midway
has no marker and is computed again, so a reader never sees half a stage.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from livo.errors import InputError
from livo.permissions import write_atomic

if TYPE_CHECKING:
    import ray.data

FINGERPRINT_FILE = "job.json"


def work_folder(output: str | os.PathLike[str]) -> Path:
    """The work folder of the job writing ``output``: a hidden sibling, so it is on the same storage
    and the final rename is a move within one file system."""
    output = Path(output)
    return output.parent / f".{output.name}.work"


def file_fingerprint(files: list[Path]) -> list[list[Any]]:
    """Each input's absolute path, size and modification time: a file changed since the stages were
    computed makes them another job's."""
    found = []
    for file in files:
        status = file.stat()
        found.append([str(file.resolve()), status.st_size, status.st_mtime_ns])
    return found


class StageCheckpoints:
    """The stages a job finished, in ``folder``, for the job described by ``fingerprint`` (any JSON).

    The stages of an earlier job with another fingerprint (its inputs changed, or its settings) are
    of no use to this one and are discarded. A folder there that is not a work folder at all is an
    error naming it, unless ``discard_other`` (the job was told to overwrite its output).
    """

    def __init__(self, folder: str | os.PathLike[str], fingerprint: dict[str, Any], discard_other: bool) -> None:
        self.folder = Path(folder)
        self.fingerprint = json.loads(json.dumps(fingerprint))  # as it reads back from the file
        marker = self.folder / FINGERPRINT_FILE
        if self.folder.exists():
            try:
                found = json.loads(marker.read_text())
            except (OSError, ValueError):
                found = None
            if found is None and not discard_other:
                raise InputError(
                    f"{self.folder}: exists but is not a work folder of this job (no readable {FINGERPRINT_FILE}); "
                    "remove it, or pass overwrite=True (--overwrite)"
                )
            if found != self.fingerprint:
                shutil.rmtree(self.folder)
        if not self.folder.exists():
            self.folder.mkdir(parents=True)
            write_atomic(marker, (json.dumps(self.fingerprint, indent=2) + "\n").encode())

    def facts(self, stage: str) -> dict[str, Any] | None:
        """The facts ``stage`` recorded when it finished, or None if it did not finish."""
        try:
            loaded: dict[str, Any] = json.loads((self.folder / f"{stage}.json").read_text())
        except FileNotFoundError:
            return None
        return loaded

    def save(
        self, stage: str, datasets: dict[str, ray.data.Dataset], facts: dict[str, Any], task_options: dict[str, Any]
    ) -> None:
        """Writes ``stage``'s datasets, a Parquet file per block (one task each, with
        ``task_options``), then its facts: the marker that it finished."""
        import ray

        write = ray.remote(_write_block)
        for name, dataset in datasets.items():
            target = self.folder / stage / name
            shutil.rmtree(target, ignore_errors=True)  # what a cut-off attempt left
            target.mkdir(parents=True)
            blocks = dataset.to_arrow_refs()
            ray.get(
                [write.options(**task_options).remote(b, str(target / _block_name(i))) for i, b in enumerate(blocks)]
            )
        write_atomic(self.folder / f"{stage}.json", (json.dumps(facts, indent=2) + "\n").encode())

    def load(self, stage: str, name: str, schema: pa.Schema, task_options: dict[str, Any]) -> ray.data.Dataset:
        """A dataset ``stage`` saved, a block per file read by a task with ``task_options``; an
        empty one of ``schema`` when it had no blocks."""
        import ray
        import ray.data

        files = sorted((self.folder / stage / name).glob("block-*.parquet"))
        if not files:
            return ray.data.from_arrow(schema.empty_table())
        read = ray.remote(_read_block)
        return ray.data.from_arrow_refs([read.options(**task_options).remote(str(f), schema) for f in files])

    def discard_if_nothing_finished(self) -> None:
        """Removes the work folder when no stage finished (a job that failed at its start leaves no
        trace); finished stages stay for a rerun."""
        if not any(p.suffix == ".json" and p.name != FINGERPRINT_FILE for p in self.folder.iterdir()) and not any(
            (self.folder / "parts").glob("part-*")
        ):
            shutil.rmtree(self.folder, ignore_errors=True)

    def parts(self) -> Path:
        """The folder the job writes its output into before the final rename."""
        folder = self.folder / "parts"
        folder.mkdir(exist_ok=True)
        return folder

    def publish(self, output: str | os.PathLike[str]) -> None:
        """Moves the parts to ``output`` (an existing folder there is replaced) and removes the work
        folder: the output appears complete or not at all."""
        parts, output = self.parts(), Path(output)
        for leftover in parts.glob(".*"):  # a temp file of a write cut off by the lost driver
            leftover.unlink()
        if output.exists():
            os.replace(output, self.folder / "replaced")  # removed with the work folder below
        os.replace(parts, output)
        shutil.rmtree(self.folder, ignore_errors=True)


def _block_name(index: int) -> str:
    return f"block-{index:05d}.parquet"


def _write_block(block: pa.Table, path: str) -> None:
    """One block as a Parquet file, atomically (a task cut off leaves no file under the name)."""
    import pyarrow.parquet as pq

    temp = Path(path).with_name(f".{Path(path).name}.tmp")
    pq.write_table(block, temp)
    os.replace(temp, path)


def _read_block(path: str, schema: pa.Schema) -> pa.Table:
    import pyarrow.parquet as pq

    return pq.read_table(path, schema=schema)
