"""Per-step training records to the console (progress bar), ``metrics.jsonl``, ``metrics.csv`` and
TensorBoard (``tensorboard/``), written by rank 0 only.

A record holds the loss, the four mean denoising errors, both hinge terms (LiVO) or the mean logit
(DPO), the implicit accuracy, the learning rate, throughput (pairs/s over all ranks) and peak memory.
On resume the files are cut back to the resumed step, so they read as one uninterrupted run.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path
from typing import Any

CSV_COLUMNS = (
    "step",
    "loss",
    "err_theta_w",
    "err_ref_w",
    "err_theta_l",
    "err_ref_l",
    "hinge_w",
    "hinge_l",
    "logit",
    "implicit_acc",
    "lr",
    "pairs_per_s",
    "s_per_step",
    "peak_memory_mb",
    "elapsed_s",
)


def _truncate_jsonl(path: Path, step: int) -> None:
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line).get("step", 0) <= step]
    temporary = path.with_suffix(".tmp")
    temporary.write_text("".join(line + "\n" for line in kept))
    os.replace(temporary, path)


def _truncate_csv(path: Path, step: int) -> None:
    if not path.exists():
        return
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    temporary = path.with_suffix(".tmp")
    with temporary.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(r for r in rows if int(r["step"]) <= step)
    os.replace(temporary, path)


class StepLog:
    """Writes step records; a no-op on ranks other than 0 (``enabled=False``)."""

    def __init__(
        self,
        output: str | os.PathLike[str],
        *,
        enabled: bool,
        total_steps: int,
        start_step: int,
        tensorboard: bool,
        progress: bool,
    ) -> None:
        self.enabled = enabled
        self.output = Path(output)
        self._bar = None
        self._tb = None
        if not enabled:
            return
        self.output.mkdir(parents=True, exist_ok=True)
        self.jsonl = self.output / "metrics.jsonl"
        self.csv = self.output / "metrics.csv"
        self.evals = self.output / "eval.jsonl"
        for path in (self.jsonl, self.evals):
            _truncate_jsonl(path, start_step)
        _truncate_csv(self.csv, start_step)
        if not self.csv.exists():
            with self.csv.open("w", newline="") as handle:
                csv.DictWriter(handle, fieldnames=CSV_COLUMNS).writeheader()
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.output / "tensorboard"), purge_step=start_step + 1)
        # One bar, on a terminal only: redrawn into a log file or a pipe it is noise (the step
        # records are in metrics.jsonl / metrics.csv either way).
        if progress and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True)

    def step(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.jsonl.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        with self.csv.open("a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=CSV_COLUMNS, extrasaction="ignore").writerow(record)
        if self._tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self._tb.add_scalar(f"train/{key}", value, record["step"])
        if self._bar is not None:
            self._bar.update(record["step"] - self._bar.n)
            self._bar.set_postfix(
                loss=f"{record['loss']:.4g}",
                acc=f"{record['implicit_acc']:.2f}",
                lr=f"{record['lr']:.2g}",
                refresh=False,
            )

    def evaluation(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.evals.open("a") as handle:
            handle.write(json.dumps({"step": step, **metrics}) + "\n")
        if self._tb is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)):
                    self._tb.add_scalar(f"eval/{key}", value, step)
        message = " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
        self.write(f"eval step {step}: {message}")

    def write(self, line: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(line)
        else:
            print(line, flush=True)

    def finish(self, line: str) -> None:
        """Closes the bar, then prints the run's last line under it (not inside a redrawn bar)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self.write(line)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._tb is not None:
            self._tb.close()
