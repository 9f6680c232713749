"""Training processes end with whatever started them: a killed ``livo demo`` leaves nothing running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from livo.lifetime import LAUNCHER_ENV, launcher_environment
from livo.toyworld.pairs import PairsConfig, write_pairs

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")


def background_job(script: str) -> subprocess.Popen[str]:
    """``python -c script`` started as a shell starts a background job (``&``, ``nohup``): with SIGINT
    ignored, which its children inherit, so torch's own parent-death signal (SIGINT) would do nothing."""
    return subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )


def kill_all(launcher: subprocess.Popen[str], children: list[psutil.Process]) -> None:
    """Kill ``launcher`` and ``children``, and only them: other children of the test session (its local
    Ray) must live on. Orphans are no longer our children, so they are named here."""
    if launcher.poll() is None:
        launcher.kill()
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass


def kill_and_expect_children_gone(launcher: subprocess.Popen[str], children: list[psutil.Process]) -> None:
    """SIGKILL ``launcher``; its ``children`` must end within 30 s (leftovers are killed either way)."""
    try:
        launcher.send_signal(signal.SIGKILL)
        launcher.wait(timeout=10)
        _, alive = psutil.wait_procs(children, timeout=30)
        assert not alive, f"still running after their launcher died: {[c.pid for c in alive]}"
    finally:
        kill_all(launcher, children)


def test_a_child_whose_launcher_is_already_gone_exits_at_once() -> None:
    """The race: the launcher died before the child asked to be told. The child must not live on."""
    script = "from livo.lifetime import end_with_launcher; end_with_launcher(); print('still running')"
    env = {**os.environ, LAUNCHER_ENV: str(os.getpid() + 1_000_000)}  # not this child's parent
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "still running" not in result.stdout


def test_the_launcher_variable_is_not_inherited_by_grandchildren() -> None:
    script = (
        "import os; from livo.lifetime import LAUNCHER_ENV, end_with_launcher; end_with_launcher(); "
        "print(os.environ.get(LAUNCHER_ENV))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=launcher_environment(dict(os.environ)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "None"


def command_line(process: psutil.Process) -> str:
    """A child's command line, or "" for one that has just exited (a zombie until reaped)."""
    try:
        return " ".join(process.cmdline())
    except (psutil.ZombieProcess, psutil.NoSuchProcess, psutil.AccessDenied):
        return ""


def test_killing_the_demo_ends_its_training_process(tmp_path: Path) -> None:
    """``livo demo`` trains in a child process (``python -m livo.train``); SIGKILL the demo while
    the child starts training, and the child must end too, without exporting anything."""
    pairs = tmp_path / "pairs"
    write_pairs(PairsConfig(output=str(pairs), bias_per_subject=2, harm_per_prompt=1, seed=1, row_group_bytes=4096))
    run = tmp_path / "runs" / "livo"
    settings = {
        "loss": "livo",
        "learning_rate": 1e-3,
        "micro_batch_size": 2,
        "max_steps": 100_000,
        "checkpoint_every": 0,
        "log_every": 1,
        "progress": False,
    }
    script = (
        "from pathlib import Path\nfrom livo.demo import _train\n"
        f"_train({settings!r}, Path({str(pairs)!r}), Path({str(run)!r}), 1)\n"
    )
    demo = background_job(script)
    children: list[psutil.Process] = []
    deadline = time.monotonic() + 120
    try:
        while True:  # the child asks to be ended with the demo first thing; 2 s of CPU is well past that
            assert demo.poll() is None, f"the demo ended early with status {demo.returncode}"
            assert time.monotonic() < deadline, "no training process within 120 s"
            children = psutil.Process(demo.pid).children(recursive=True)
            trainers = [c for c in children if "livo.train" in command_line(c)]
            try:
                if trainers and sum(trainers[0].cpu_times()[:2]) >= 2.0:
                    break
            except (psutil.ZombieProcess, psutil.NoSuchProcess):
                pass  # that process just ended; look again
            time.sleep(0.2)
    except BaseException:  # a failure while waiting is the error to report, not the kill's
        kill_all(demo, children)
        raise
    kill_and_expect_children_gone(demo, children)
    assert not (run / "value_encoder").exists() and not (run / "run_summary.json").exists()


def test_killing_toyworld_train_ends_its_ranks(tmp_path: Path) -> None:
    """A killed ``livo toyworld train`` must not leave its spawned ranks training and saving."""
    script = (
        "from livo.toyworld.train import ToyModelRecipe, train\n"
        f"train(ToyModelRecipe(output={str(tmp_path / 'model')!r}, steps=100000, batch_size=2, processes=2, "
        "log_every=1), log=lambda line: print(line, flush=True))\n"
    )
    launcher = background_job(script)
    ranks: list[psutil.Process] = []
    try:
        assert launcher.stdout is not None
        first = launcher.stdout.readline()  # the ranks are training once a step is logged
        assert '"step"' in first, first
        ranks = psutil.Process(launcher.pid).children(recursive=True)
        assert len([r for r in ranks if "spawn" in command_line(r)]) == 2
    except BaseException:
        kill_all(launcher, ranks)
        raise
    kill_and_expect_children_gone(launcher, ranks)
    assert not (tmp_path / "model").exists()


def test_a_launcher_that_is_pid_1_keeps_its_children() -> None:
    """A container's first process is pid 1 (``docker run IMAGE livo demo``): its training child took
    a parent of pid 1 for "re-parented, the launcher is gone" and exited at once, silently. Run here
    as pid 1 of a new pid namespace."""
    import shutil

    if shutil.which("unshare") is None or subprocess.run(["unshare", "-Urpf", "true"], check=False).returncode:
        pytest.skip("no unprivileged pid namespaces on this machine (unshare -Urpf)")
    launcher = (
        "import os, subprocess, sys\n"
        "from livo.lifetime import launcher_environment\n"
        "assert os.getpid() == 1\n"
        "child = 'from livo.lifetime import end_with_launcher; end_with_launcher(); print(\"still running\")'\n"
        "done = subprocess.run([sys.executable, '-c', child], env=launcher_environment(dict(os.environ)))\n"
        "sys.exit(done.returncode)\n"
    )
    result = subprocess.run(
        ["unshare", "-Urpf", "--mount-proc", sys.executable, "-c", launcher],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and "still running" in result.stdout, result.stderr[-2000:]
