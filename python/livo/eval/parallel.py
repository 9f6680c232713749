"""Generate an evaluation's images in several worker processes.

Why processes: on CPU the toy world's U-Net is too small for two intra-op threads to share well
(``docs/benchmarks.md``): two processes with one thread each ran an evaluation 1.87x faster than
one process with two threads. On a GPU one process is the right choice (``workers: 1``, the default).

Each worker loads the base model and builds the configured methods once, then generates whole
(method, prompt) tasks -- the same calls, seeds and batches as the serial harness, so the images are
those of a serial run with the same thread count. Images come back as uint8 arrays through
``concurrent.futures`` (process-internal transfer; nothing is written to disk here).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Any

import numpy as np

from livo.eval.config import EvalConfig
from livo.runtime import apply_process_defaults

_WORKER: dict[str, Any] = {}


def _start_worker(config: EvalConfig) -> None:
    # Ctrl-C reaches the workers too (one process group). While a worker starts, the command's own
    # "interrupted" says it all: the worker leaves quietly instead of printing its traceback and
    # the executor's. SIGINT was blocked since the worker was spawned, so none is missed.
    signal.signal(signal.SIGINT, _leave_quietly)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    _load_worker(config)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _leave_quietly(signum: int, frame: Any) -> None:
    os._exit(128 + signum)


def _load_worker(config: EvalConfig) -> None:
    import torch

    from livo.eval.methods import BaseModels, build_methods
    from livo.eval.prompts import load_prompts

    torch.set_num_threads(config.threads)
    prompts, registry = load_prompts(
        config.prompts.set,
        config.prompts.file,
        config.prompts.registry,
        config.prompts.categories,
        config.prompts.per_category,
    )
    _WORKER.update(config=config, prompts=prompts, methods=build_methods(config, BaseModels(config), registry))


def _generate(method_index: int, prompt_index: int) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    method, prompt = _WORKER["methods"][method_index], _WORKER["prompts"][prompt_index]
    images = method.generate(prompt, _WORKER["config"].seeds_for(prompt_index))
    return images, time.perf_counter() - started


def generate_in_workers(
    config: EvalConfig, tasks: Sequence[tuple[int, int]], done: Callable[[tuple[int, int], np.ndarray, float], None]
) -> None:
    """Generate every ``(method index, prompt index)`` task on ``config.workers`` processes (each with
    ``config.threads`` torch threads); ``done(task, images, seconds)`` is called here as each ends.
    A failing task raises here, after the pool has been shut down."""
    import multiprocessing

    apply_process_defaults()  # inherited by the workers
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(config.workers, mp_context=context, initializer=_start_worker, initargs=(config,)) as pool:
        with _sigint_blocked():  # the workers are spawned as the tasks are submitted
            futures = {pool.submit(_generate, *task): task for task in tasks}
        try:
            for future in as_completed(futures):
                images, seconds = future.result()
                done(futures[future], images, seconds)
        except BaseException:
            for future in futures:
                future.cancel()
            raise


@contextmanager
def _sigint_blocked() -> Iterator[None]:
    """SIGINT held back (and inherited so by processes started here) until the block ends: a Ctrl-C
    meanwhile is delivered then, not lost."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
