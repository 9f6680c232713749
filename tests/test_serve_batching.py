"""JobBatcher: batches form when the runner is free, respect the image limit, and fail or cancel per job."""

from __future__ import annotations

import asyncio

import pytest

from livo.serve.batching import JobBatcher, QueueFull


class Recorder:
    """A runner that records each batch and can be held until released."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[str, int]]] = []
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        self.fail_on: str | None = None

    async def run(self, jobs: list[tuple[str, int]]) -> list[str]:
        self.batches.append(list(jobs))
        self.started.set()
        await self.release.wait()
        if self.fail_on is not None and any(name == self.fail_on for name, _ in jobs):
            raise RuntimeError(f"cannot run {self.fail_on}")
        return [f"done:{name}" for name, _ in jobs]


def make(recorder: Recorder, max_images: int = 8, wait_s: float = 0.01, max_jobs: int | None = None) -> JobBatcher:
    return JobBatcher(recorder.run, lambda job: job[1], max_images, wait_s, max_jobs=max_jobs)


async def occupied(recorder: Recorder, batcher: JobBatcher, name: str = "hold") -> asyncio.Future:
    """Submits a one-image job and returns once the runner holds it, so later jobs must queue."""
    running = asyncio.ensure_future(batcher.submit((name, 1)))
    await recorder.started.wait()
    return running


def test_jobs_that_arrive_during_a_call_form_the_next_batch_together():
    async def scenario() -> list[list[tuple[str, int]]]:
        recorder = Recorder()
        batcher = make(recorder, wait_s=0.0)
        first = await occupied(recorder, batcher, "a")
        # Arrive one by one, spread out, while "a" runs: serve.batch would cut them into small batches.
        later = []
        for name in "bcdef":
            later.append(asyncio.ensure_future(batcher.submit((name, 1))))
            await asyncio.sleep(0.005)
        recorder.release.set()
        results = await asyncio.gather(first, *later)
        assert results == [f"done:{n}" for n in "abcdef"]
        return recorder.batches

    batches = asyncio.run(scenario())
    assert [[name for name, _ in batch] for batch in batches] == [["a"], ["b", "c", "d", "e", "f"]]


def test_batches_never_exceed_the_image_limit_and_keep_arrival_order():
    async def scenario() -> list[list[tuple[str, int]]]:
        recorder = Recorder()
        batcher = make(recorder, max_images=8)
        hold = await occupied(recorder, batcher)
        jobs = [("p", 3), ("q", 4), ("r", 2), ("s", 8), ("t", 1)]
        futures = [asyncio.ensure_future(batcher.submit(job)) for job in jobs]
        await asyncio.sleep(0.01)
        recorder.release.set()
        await asyncio.gather(hold, *futures)
        return recorder.batches

    batches = asyncio.run(scenario())
    assert [[name for name, _ in batch] for batch in batches] == [["hold"], ["p", "q"], ["r"], ["s"], ["t"]]
    assert all(sum(size for _, size in batch) <= 8 for batch in batches)


def test_a_failing_batch_fails_its_callers_only_and_the_batcher_goes_on():
    async def scenario() -> None:
        recorder = Recorder()
        recorder.fail_on = "bad"
        recorder.release.set()
        batcher = make(recorder, max_images=2)
        with pytest.raises(RuntimeError, match="cannot run bad"):
            await batcher.submit(("bad", 1))
        assert await batcher.submit(("good", 1)) == "done:good"

    asyncio.run(scenario())


def test_a_cancelled_job_is_dropped_before_it_runs():
    async def scenario() -> list[list[tuple[str, int]]]:
        recorder = Recorder()
        batcher = make(recorder)
        hold = await occupied(recorder, batcher)
        gone = asyncio.ensure_future(batcher.submit(("gone", 1)))
        kept = asyncio.ensure_future(batcher.submit(("kept", 1)))
        await asyncio.sleep(0)
        gone.cancel()
        recorder.release.set()
        assert await kept == "done:kept"
        await hold
        return recorder.batches

    batches = asyncio.run(scenario())
    assert [[name for name, _ in batch] for batch in batches] == [["hold"], ["kept"]]


def test_the_wait_window_collects_jobs_when_the_runner_is_idle():
    async def scenario() -> list[list[tuple[str, int]]]:
        recorder = Recorder()
        recorder.release.set()
        batcher = make(recorder, wait_s=0.2)
        futures = []
        for name in "xyz":
            futures.append(asyncio.ensure_future(batcher.submit((name, 1))))
            await asyncio.sleep(0.02)
        await asyncio.gather(*futures)
        return recorder.batches

    batches = asyncio.run(scenario())
    assert [[name for name, _ in batch] for batch in batches] == [["x", "y", "z"]]


def test_past_max_jobs_a_job_is_refused_at_once_and_room_returns_as_jobs_finish():
    async def scenario() -> None:
        recorder = Recorder()
        batcher = make(recorder, max_jobs=2)
        hold = await occupied(recorder, batcher)
        waiting = asyncio.ensure_future(batcher.submit(("waiting", 1)))
        await asyncio.sleep(0)
        with pytest.raises(QueueFull, match=r"2 jobs already waiting or running here \(limit 2\)"):
            await batcher.submit(("refused", 1))
        waiting.cancel()  # a caller that gives up frees its place too
        await asyncio.sleep(0)
        assert batcher.held == 1
        recorder.release.set()
        assert await hold == "done:hold"
        assert await batcher.submit(("after", 1)) == "done:after"
        assert batcher.held == 0

    asyncio.run(scenario())


def test_max_images_must_be_positive():
    with pytest.raises(ValueError, match="max_images must be at least 1"):
        JobBatcher(lambda jobs: None, lambda job: 1, 0, 0.0)  # type: ignore[arg-type, return-value]


def test_the_model_thread_is_named_for_the_os():
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from livo.serve.engine import MODEL_THREAD_NAME, name_os_thread

    def os_name() -> str:
        with open(f"/proc/self/task/{threading.get_native_id()}/comm", encoding="ascii") as comm:
            return comm.read().strip()

    with ThreadPoolExecutor(1, initializer=name_os_thread, initargs=(MODEL_THREAD_NAME,)) as pool:
        assert pool.submit(os_name).result() == MODEL_THREAD_NAME
    with ThreadPoolExecutor(1, initializer=name_os_thread, initargs=("a-name-longer-than-fifteen",)) as pool:
        assert pool.submit(os_name).result() == "a-name-longer-t"
    assert os_name() != MODEL_THREAD_NAME  # only the pool's thread was renamed


def test_selections_past_the_bound_are_refused_and_one_cut_off_still_counts_until_it_ends():
    """/v1/select ran in the event loop's thread pool with no bound: a selection cut off by the
    request timeout ran on, holding a thread (and the selector's lock), and any number could pile up."""
    from livo.serve.app import ModelReplica
    from livo.serve.config import parse_config

    replica = ModelReplica(parse_config({}), max_jobs=1)

    async def scenario() -> list[dict]:
        with replica.engine._selector_lock:  # the first selection waits here, as behind a slow one
            first = asyncio.ensure_future(replica.select(["a zombie house"]))
            await asyncio.sleep(0.05)
            with pytest.raises(QueueFull, match=r"1 selections already waiting or running here \(limit 1\)"):
                await replica.select(["a ball"])
            with pytest.raises(TimeoutError):  # the request timeout gives up on it; it runs on
                await asyncio.wait_for(asyncio.shield(first), 0.05)
            with pytest.raises(QueueFull):
                await replica.select(["a ball"])
        answered = await first
        await asyncio.sleep(0.05)
        return answered + await replica.select(["a ball"])

    selections = asyncio.run(scenario())
    assert [s["value_id"] for s in selections] == ["no_zombie", None]


def test_a_split_layout_model_replica_bounds_its_selections_too():
    """The split layout's Generator replica was built without the bound: Serve stops counting a
    selection the request timeout cut off, which then ran on, so any number could pile up there."""
    from livo.serve.app import Generator
    from livo.serve.config import parse_config

    config = parse_config({"generator": {"max_ongoing_requests": 1, "max_queued_requests": 1}})
    replica = Generator.func_or_class(config.model_dump())

    async def scenario() -> None:
        with replica.engine._selector_lock:
            held = [asyncio.ensure_future(replica.select(["a zombie house"])) for _ in range(2)]
            await asyncio.sleep(0.05)
            with pytest.raises(QueueFull, match=r"\(limit 2\)"):
                await replica.select(["a ball"])
        await asyncio.gather(*held)

    asyncio.run(scenario())
