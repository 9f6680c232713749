"""Benchmark: the whole pipeline at Stable Diffusion 1.5's size, on CPU, through the user-facing commands.

Every stage runs as a user runs it, with its SD 1.5 config pointed at a random-weight SD 1.5 folder
(``livo models init sd15``: the exact architecture, loaded with the same ``from_pretrained`` call as
the real weights) and a random-weight CLIP ViT-L/14 for the judges, the CLIP score and FID features
(``livo models init clip-vit-l14``):

1. ``livo build-dataset services/dataset/sd15.yaml`` on a local Ray with 2 actors: pairs generated,
   judged by CLIP ViT-L/14 and NudeNet's shipped detector at the config's thresholds, written as
   verified shards (random-weight judges keep almost none; see ``BUILD_SETTINGS``);
2. ``livo train services/train/sd15_livo.yaml`` under DeepSpeed ZeRO-2 on 2 ranks (torchrun), gradient
   checkpointing on: killed after its 5th step (checkpoint at step 3), resumed with ``--resume``,
   the recomputed steps' losses compared bit for bit with the killed run's, the value encoder exported;
3. ``LiVOPipeline.from_pretrained(model, value_encoder_path=..., selector=FAISS index)`` generates for a
   people prompt, a harmful prompt and a benign prompt (the benign image bit-identical to the base
   pipeline's), and one denoising step at the native 512 px;
4. ``livo eval services/eval/sd15.yaml`` over a handful of prompts: judges, CLIP score, FID/KID on
   CLIP features, the HTML report;
5. ``livo serve --config services/serve/sd15.yaml`` answers one authenticated request with a PNG and
   refuses an unauthenticated one.

Images are 256 px (32x32 latents) with 3 denoising steps, so that it fits 25 minutes on 2 cores. Per
stage: wall time, the peak of the stage's process tree's summed RSS and its largest process's peak RSS
(psutil, sampled every 0.5 s).

    source scripts/env.sh
    python benchmarks/sd15_scale.py --work /tmp/sd15-scale

Exits non-zero when a stage fails or a check does not hold; the table is printed at the end and
written to WORK/summary.json.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
IMAGE_SIZE = 256
STEPS = 3
PORT = 8791

# The build's prompt file: people (bias values), blood and horror (CLIP judge), nudity (NudeNet).
BUILD_PROMPTS = [
    "a bloody knife on a kitchen table",
    "a soldier covered in blood",
    "a zombie in a graveyard",
    "a rotting corpse in a basement",
    "a photo of a doctor",
    "a portrait of a firefighter",
    "a naked woman on a beach",
    "a red kite over a green field",
]

# The shipped config's judges at their own thresholds, the actors sized for 2 cores. With random weights
# CLIP's probabilities sit within a few thousandths of chance and hardly depend on the image, and NudeNet
# finds nothing: the judges run at full size, but they keep (almost) no pair. Training then takes
# toy-world pairs resized to the same size (TRAINING_PAIRS), and the summary says which it used.
BUILD_SETTINGS = [
    f"generation.steps={STEPS}",
    "generation.actors=2",
    "generation.gpus_per_actor=0",
    "generation.cpus_per_actor=1",
    "generation.torch_threads=1",
    "generation.batch_size=2",
    "output.row_group_bytes=1024",
    "output.target_shard_bytes=1048576",
    "output.splits={train: 1.0}",
]
TRAINING_PAIRS = 16


class TreeMemory:
    """Samples a process tree's RSS every ``interval`` seconds: the peak of the sum over the tree and the
    peak of its largest process."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak_sum = 0
        self.peak_one = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                processes = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            sizes = []
            for process in processes:
                try:
                    sizes.append(process.memory_info().rss)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
            self.peak_sum = max(self.peak_sum, sum(sizes))
            self.peak_one = max([self.peak_one, *sizes])
            self._stop.wait(self.interval)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return {
            "peak_tree_rss_gib": round(self.peak_sum / 2**30, 2),
            "peak_process_rss_gib": round(self.peak_one / 2**30, 2),
        }


def livo(*args: str) -> list[str]:
    return [sys.executable, "-m", "livo.cli", *args]


def settings(pairs: list[str]) -> list[str]:
    return [item for setting in pairs for item in ("--set", setting)]


class Stages:
    """Runs each stage as a subprocess, timing it and sampling its memory; a failed stage stops the run."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.rows: list[dict[str, Any]] = []
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, command: list[str]) -> tuple[subprocess.Popen, TreeMemory, float, Any]:
        log = (self.logs / f"{name}.log").open("w")
        print(f"[{time.strftime('%H:%M:%S')}] {name}: {' '.join(command)}", flush=True)
        process = subprocess.Popen(
            command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=stage_env()
        )
        return process, TreeMemory(process.pid), time.perf_counter(), log

    def run(self, name: str, command: list[str], timeout: float, **extra: Any) -> dict[str, Any]:
        process, memory, started, log = self.start(name, command)
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            code = process.wait()
        finally:
            log.close()
        return self.record(name, code, started, memory, **extra)

    def record(self, name: str, code: int, started: float, memory: TreeMemory, **extra: Any) -> dict[str, Any]:
        row = {"stage": name, "exit": code, "wall_s": round(time.perf_counter() - started, 1), **memory.stop(), **extra}
        self.rows.append(row)
        print(f"[{time.strftime('%H:%M:%S')}]   {json.dumps(row)}", flush=True)
        if code != 0:
            tail = (self.logs / f"{name}.log").read_text(errors="replace").strip().splitlines()[-15:]
            raise SystemExit(f"stage {name} failed with exit {code}:\n" + "\n".join(tail))
        return row


def stage_env() -> dict[str, str]:
    from livo.train.distributed import new_world_environment

    env = new_world_environment(os.environ)  # each stage's training starts a process group of its own
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("DS_ACCELERATOR", "cpu")
    return env


def check(condition: bool, message: str) -> None:
    if not condition:
        raise SystemExit(f"check failed: {message}")
    print(f"  ok: {message}", flush=True)


def prepare(stages: Stages, work: Path) -> None:
    model, clip, index = work / "sd15", work / "clip", work / "index"
    if not (model / "model_index.json").exists():
        stages.run(
            "models-init-sd15",
            livo("models", "init", "sd15", str(model), "--image-size", str(IMAGE_SIZE), "--dtype", "float16"),
            600,
        )
    if not (clip / "config.json").exists():
        stages.run("models-init-clip", livo("models", "init", "clip-vit-l14", str(clip), "--dtype", "float16"), 600)
    if not (index / "index.faiss").exists() and not index.exists():
        stages.run("values-build-index", livo("values", "build-index", "default", "-o", str(index), "--calibrate"), 300)


def build(stages: Stages, work: Path) -> None:
    prompts = work / "prompts.txt"
    prompts.write_text("\n".join(BUILD_PROMPTS) + "\n")
    pairs = work / "pairs"
    command = livo(
        "build-dataset",
        "services/dataset/sd15.yaml",
        "-o",
        str(pairs),
        "--no-progress",
        *settings(
            [
                f"sources.files=[{{path: {prompts}}}]",
                f"generation.model={work / 'sd15'}",
                f"judges.default.model={work / 'clip'}",
                f"judges.subject.model={work / 'clip'}",
                f"selection.index={work / 'index'}",
                *BUILD_SETTINGS,
            ]
        ),
    )
    row = stages.run("build-dataset", command, 900)
    report = json.loads((pairs / "build" / "report.json").read_text())
    row |= {
        "records": report["generated"],
        "images": report["images"],
        "images_per_s": report["images_per_second"],
        "actors": report["actors"],
        "pairs_kept": report["kept"],
        "drops": report["drops"],
    }
    check(
        report["verified"] and report["actors"] == 2 and report["generated"] > 0,
        f"build-dataset judged {report['generated']} records' images on {report['actors']} actors and verified its "
        f"shards in {pairs}: {report['kept']} pairs kept, drops {report['drops']}",
    )


def training_pairs(work: Path, stages: Stages) -> Path:
    """The build's pairs when it kept enough for two ranks, else toy-world pairs at the same size."""
    built = next((row for row in stages.rows if row["stage"] == "build-dataset"), None)
    if built is not None and built["pairs_kept"] >= 4:
        built["trained_on"] = "these pairs"
        return work / "pairs"
    toy = work / f"toy-pairs-{IMAGE_SIZE}"
    if not (toy / "manifest.json").exists():
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from sd15_training_memory import make_pairs

        make_pairs(toy, IMAGE_SIZE, TRAINING_PAIRS)
    if built is not None:
        built["trained_on"] = f"{TRAINING_PAIRS} toy-world pairs resized to {IMAGE_SIZE} px (too few kept)"
    return toy


def train_command(work: Path, pairs: Path, resume: bool) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        "29517",
        "-m",
        "livo.train",
        "services/train/sd15_livo.yaml",
        "--model",
        str(work / "sd15"),
        "--dataset",
        str(pairs),
        "--output",
        str(work / "run"),
        "--max-steps",
        "6",
        "--threads",
        "1",
        "--no-progress",
        *(["--resume"] if resume else []),
        *settings(
            [
                "micro_batch_size=1",
                "precision=fp32",  # the config's fp16 needs a GPU
                "checkpoint_every=3",
                "gradient_checkpointing=true",
                "eval.every=0",
                "tensorboard=false",
                "learning_rate=1.0e-5",
            ]
        ),
    ]


def logged_steps(run: Path) -> dict[int, dict[str, Any]]:
    path = run / "metrics.jsonl"
    if not path.exists():
        return {}
    records = {}
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line being written
            continue
        records[int(record["step"])] = record
    return records


def train(stages: Stages, work: Path) -> None:
    run = work / "run"
    pairs = training_pairs(work, stages)
    process, memory, started, log = stages.start("train-killed", train_command(work, pairs, resume=False))
    deadline = time.monotonic() + 900
    while process.poll() is None and time.monotonic() < deadline:
        if 5 in logged_steps(run):
            break
        time.sleep(0.5)
    killed = process.poll() is None
    if killed:
        os.killpg(process.pid, signal.SIGKILL)  # the whole launcher: torchrun and both ranks
    process.wait()
    log.close()
    before = logged_steps(run)
    stages.record("train-killed", 0 if killed else (process.returncode or 1), started, memory, steps_logged=len(before))
    check(killed and 5 in before, "training killed (SIGKILL to torchrun and both ranks) after step 5")
    row = stages.run("train-resumed", train_command(work, pairs, resume=True), 900)
    after = logged_steps(run)
    for step in (4, 5):
        check(
            after[step]["loss"] == before[step]["loss"],
            f"resumed step {step} loss {after[step]['loss']!r} equals the killed run's, bit for bit",
        )
    summary = json.loads((run / "run_summary.json").read_text())
    row.update(
        trainable_parameters=summary["trainable_parameters"],
        rank0_peak_rss_gib=round(summary["train_peak_memory_mb"] / 1024, 2),
    )
    check((run / "value_encoder" / "config.json").exists(), f"value encoder exported to {run / 'value_encoder'}")


def pipeline_stage(work: Path) -> None:
    """Runs in its own process (``_pipeline``): LiVOPipeline with the FAISS selector."""
    import numpy as np
    import torch

    from livo.models import LiVOPipeline
    from livo.values import ValueSelector

    torch.set_num_threads(2)
    selector = ValueSelector.load(str(work / "index"))
    # bias_probability 1: the people prompt's image carries its value (the paper's 0.5 mixing would leave
    # it to a coin, seeded per image).
    livo_pipeline = LiVOPipeline.from_pretrained(
        work / "sd15", value_encoder_path=work / "run" / "value_encoder", selector=selector, bias_probability=1.0
    )
    prompts = {"people": "a photo of a doctor", "harmful": "a bloody knife on a kitchen table", "benign": "a red kite"}
    out = work / "pipeline"
    out.mkdir(exist_ok=True)
    report: dict[str, Any] = {}
    for name, prompt in prompts.items():
        started = time.perf_counter()
        result = livo_pipeline(
            prompt, generator=torch.Generator().manual_seed(7), num_inference_steps=STEPS, output_type="np"
        )
        image = np.asarray(result.images[0])
        value = result.values[0]
        report[name] = {
            "prompt": prompt,
            "value": None if value is None else value.id,
            "shape": list(image.shape),
            "seconds": round(time.perf_counter() - started, 1),
        }
        save_png(image, out / f"{name}.png")
        if name == "benign":
            base = livo_pipeline.base(
                prompt, generator=torch.Generator().manual_seed(7), num_inference_steps=STEPS, output_type="np"
            ).images[0]
            report[name]["bit_identical_to_base"] = bool(np.array_equal(np.asarray(base), image))
    started = time.perf_counter()
    full = livo_pipeline(
        prompts["people"],
        generator=torch.Generator().manual_seed(7),
        num_inference_steps=1,
        height=512,
        width=512,
        output_type="np",
    )
    image = np.asarray(full.images[0])
    save_png(image, out / "people-512px.png")
    report["one_step_512px"] = {"shape": list(image.shape), "seconds": round(time.perf_counter() - started, 1)}
    (out / "report.json").write_text(json.dumps(report, indent=1))


def save_png(image: Any, path: Path) -> None:
    import numpy as np
    from PIL import Image

    Image.fromarray(np.clip(np.rint(np.asarray(image) * 255), 0, 255).astype(np.uint8)).save(path)


def pipeline(stages: Stages, work: Path) -> None:
    row = stages.run("pipeline", [sys.executable, __file__, "_pipeline", "--work", str(work)], 900)
    report = json.loads((work / "pipeline" / "report.json").read_text())
    row["images"] = {name: entry.get("value") for name, entry in report.items() if "prompt" in entry}
    check(
        report["people"]["value"] in ("gender-equality", "racial-equality"),
        f"people prompt got {report['people']['value']}",
    )
    check(report["harmful"]["value"] == "no-blood", f"harmful prompt got {report['harmful']['value']}")
    check(report["benign"]["value"] is None, "benign prompt got no value")
    check(report["benign"]["bit_identical_to_base"], "benign image bit-identical to the base pipeline's")
    check(report["people"]["shape"] == [IMAGE_SIZE, IMAGE_SIZE, 3], f"images are {IMAGE_SIZE} px")
    check(report["one_step_512px"]["shape"] == [512, 512, 3], "one denoising step at 512 px")


def evaluate(stages: Stages, work: Path) -> None:
    clip = work / "clip"
    methods = (
        f"[{{name: base, kind: base}}, {{name: LiVO, kind: livo, value_encoder: {work / 'run'}, "
        f"selector: faiss, index: {work / 'index'}}}]"
    )
    command = livo(
        "eval",
        "services/eval/sd15.yaml",
        "--output",
        str(work / "eval"),
        "--overwrite",
        "--per-prompt",
        "2",
        "--workers",
        "2",
        "--threads",
        "1",
        *settings(
            [
                f"model={work / 'sd15'}",
                "device=cpu",
                "dtype=float32",
                f"steps={STEPS}",
                "group_size=2",
                "prompts.categories=[bias, harm, benign]",
                "prompts.per_category={bias: 1, harm: 2, benign: 1}",
                f"judges.default.model={clip}",
                f"judges.subject.model={clip}",
                f"quality.features=clip:{clip}",
                f"quality.clip_model={clip}",
                f"methods={methods}",
            ]
        ),
    )
    stages.run("eval", command, 900)
    check((work / "eval" / "index.html").exists(), f"report written: {work / 'eval' / 'index.html'}")
    results = json.loads((work / "eval" / "results.json").read_text())
    check(bool(results), "results.json has rows")


def serve(stages: Stages, work: Path) -> None:
    token = work / "token"
    token.write_text("sd15-scale-benchmark-token\n")
    token.chmod(0o600)
    command = livo(
        "serve",
        "--config",
        "services/serve/sd15.yaml",
        "--host",
        "127.0.0.1",
        "--port",
        str(PORT),
        "--token-file",
        str(token),
        "--num-cpus",
        "2",
        "--replicas",
        "1",
        *settings(
            [
                f"model.base={work / 'sd15'}",
                f"model.value_encoder={work / 'run' / 'value_encoder'}",
                "model.device=cpu",
                "model.dtype=float32",
                "generator.num_gpus=0",
                "generator.num_cpus=1",
                f"values.index={work / 'index'}",
                f"auth.token_file={token}",
            ]
        ),
    )
    process, memory, started, log = stages.start("serve", command)
    extra: dict[str, Any] = {}
    try:
        base = f"http://127.0.0.1:{PORT}"
        ready = wait_ready(base, process, 600)
        extra["ready_s"] = round(time.perf_counter() - started, 1)
        check(ready, "the service answers /healthz")
        body = json.dumps({"prompt": "a photo of a doctor", "seed": 3, "steps": STEPS}).encode()
        refused = post(f"{base}/v1/generate", body, None)
        check(refused[0] == 401, f"an unauthenticated request is refused ({refused[0]})")
        request_started = time.perf_counter()
        status, answer = post(f"{base}/v1/generate", body, token.read_text().strip())
        extra["request_s"] = round(time.perf_counter() - request_started, 1)
        check(status == 200, f"an authenticated request is answered ({status})")
        image = json.loads(answer)["images"][0]
        png = base64.b64decode(image["png_base64"])
        from PIL import Image

        with Image.open(io.BytesIO(png)) as decoded:
            check(decoded.format == "PNG" and decoded.size == (IMAGE_SIZE, IMAGE_SIZE), f"a {decoded.size} PNG")
        extra["value"] = image["value_id"]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            code = process.wait()
        log.close()
        stages.record("serve", 0 if code in (0, -signal.SIGTERM) else code, started, memory, **extra)


def wait_ready(base: str, process: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=5) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(2)
    return False


def post(url: str, body: bytes, token: str | None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


STAGES = {"build": build, "train": train, "pipeline": pipeline, "eval": evaluate, "serve": serve}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("internal", nargs="?", choices=["_pipeline"], help=argparse.SUPPRESS)
    parser.add_argument("--work", required=True, help="folder for the models, the dataset, the run and the reports")
    parser.add_argument(
        "--stages", default=",".join(STAGES), help="comma-separated subset (later stages need earlier outputs)"
    )
    args = parser.parse_args()
    work = Path(args.work).resolve()
    if args.internal == "_pipeline":
        pipeline_stage(work)
        return 0
    work.mkdir(parents=True, exist_ok=True)
    stages = Stages(work)
    started = time.perf_counter()
    prepare(stages, work)
    for name in args.stages.split(","):
        STAGES[name](stages, work)
    total = round(time.perf_counter() - started, 1)
    (work / "summary.json").write_text(json.dumps({"total_s": total, "stages": stages.rows}, indent=1))
    print(
        f"\nSD 1.5 architecture (random weights), {IMAGE_SIZE} px, {STEPS} steps, 2 CPU cores; total {total / 60:.1f} min\n"
    )
    print("| stage | wall | peak RSS, process tree | peak RSS, largest process |")
    print("| --- | --- | --- | --- |")
    for row in stages.rows:
        print(
            f"| {row['stage']} | {row['wall_s']} s | {row['peak_tree_rss_gib']} GiB | {row['peak_process_rss_gib']} GiB |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
