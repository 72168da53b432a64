"""``ltx2-server generate``: one video without a server, through the same service, supervisor and worker
child; the API's parameters become flags, validated by the same models (server.api.params.I2VParams, or
T2VParams without --image).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

from pydantic import ValidationError

from server.api.params import I2VParams, T2VParams, describe_validation_error, job_spec
from server.clock import SystemClock
from server.errors import ServiceError
from server.jobs.memory_store import InMemoryJobStore
from server.jobs.record import Job, JobStatus
from server.settings import Settings
from server.storage.results import SharedDirStorage
from server.workers.child import weights_problems, worker_config_from
from server.workers.messages import FAULT_INPUT
from server.workers.pool import WorkerPool
from server.workers.supervisor import WorkerState, WorkerSupervisor

# Parameters that only make sense for a server (a callback URL) are not flags here.
NOT_FLAGS = {"webhook"}
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C


# Request fields that take their own flag shapes below (lists of objects, a switch).
SHAPED = {"keyframes", "loras", "enhance_prompt"}


def add_parameter_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    for name, info in I2VParams.model_fields.items():
        if name in NOT_FLAGS or name in SHAPED:
            continue
        flag = "--" + name.replace("_", "-")
        if name == "image":
            text = "a file path, an http(s) URL or a data URI (without it: text-to-video, as ltx-2-19b-t2v)"
            parser.add_argument(flag, metavar="IMAGE", help=text)
            continue
        kind: type = int if info.annotation is int else float if info.annotation is float else str
        default = None if info.is_required() else info.default
        metavar, text = {int: "N", float: "X"}.get(kind, "TEXT"), f"{info.description} [{_shown(default)}]"
        parser.add_argument(flag, type=kind, required=info.is_required(), default=default, metavar=metavar, help=text)
    parser.add_argument(
        "--keyframe",
        action="append",
        default=[],
        metavar="IMAGE@FRAME[:STRENGTH]",
        help="a further image the video passes through at output frame FRAME (strength 0-1, default 1); repeatable",
    )
    parser.add_argument(
        "--lora", action="append", default=[], metavar="NAME[:SCALE]", help="apply one of --loras' LoRAs; repeatable"
    )
    parser.add_argument(
        "--enhance-prompt", action="store_true", help="rewrite the prompt with the model's text encoder first"
    )
    parser.add_argument("--out", required=True, metavar="MP4", help="where to write the mp4")


def _shown(default: object, limit: int = 24) -> str:
    text = repr(default)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def parameters_from(args: argparse.Namespace) -> T2VParams:
    """The request the flags make: image-to-video with --image, else text-to-video."""
    values = {
        name: getattr(args, name) for name in I2VParams.model_fields if name not in NOT_FLAGS and name not in SHAPED
    }
    values["loras"] = [_lora_argument(text) for text in args.lora]
    values["enhance_prompt"] = bool(args.enhance_prompt)
    if values["image"] is None:
        if args.keyframe:
            raise ValueError("keyframe: needs --image (frame 0); text-to-video takes no keyframes")
        del values["image"]
        return T2VParams(**values)
    values["image"] = _image_argument(values["image"])
    values["keyframes"] = [_keyframe_argument(text) for text in args.keyframe]
    return I2VParams(**values)


def _keyframe_argument(text: str) -> dict:
    """IMAGE@FRAME[:STRENGTH] -> a keyframe object (the image read as --image is)."""
    image, at, place = text.rpartition("@")
    frame, _, strength = place.partition(":")
    if not at or not image or not frame.strip().isdigit():
        raise ValueError(f"keyframe: must look like IMAGE@FRAME or IMAGE@FRAME:STRENGTH; got {text!r}")
    try:
        keyframe: dict = {"image": _image_argument(image), "frame": int(frame)}
    except FileNotFoundError:
        raise FileNotFoundError(f"keyframe: no such file: {image}") from None
    if strength:
        keyframe["strength"] = _number("keyframe", strength)
    return keyframe


def _lora_argument(text: str) -> dict:
    name, _, scale = text.partition(":")
    return {"name": name, **({"scale": _number("lora", scale)} if scale else {})}


def _number(flag: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{flag}: {text!r} is not a number") from None


def _image_argument(value: str) -> str:
    """A local file is sent as base64, exactly as a client would; URLs and data URIs pass as they are."""
    if value.lower().startswith(("http://", "https://", "data:")):
        return value
    path = Path(value)
    if not path.is_file():
        raise FileNotFoundError(f"image: no such file: {value}")
    return base64.b64encode(path.read_bytes()).decode()


class ProgressView:
    """A bar redrawn in place on a terminal; otherwise one plain line per stage and per tenth of progress."""

    def __init__(self, stream: TextIO, is_terminal: bool, width: int = 30) -> None:
        self._stream = stream
        self.is_terminal = is_terminal
        self._width = width
        self._last_line: tuple[str, int] | None = None
        self._started = time.monotonic()

    def __call__(self, job: Job, change: str) -> None:
        progress = job.progress
        stage = job.stage if job.status is not JobStatus.QUEUED else "queued"
        steps = f" {job.step}/{job.total_steps}" if job.total_steps > 1 else ""
        elapsed = time.monotonic() - self._started
        if self.is_terminal:
            filled = round(progress * self._width)
            bar = "#" * filled + "-" * (self._width - filled)
            self._stream.write(f"\r[{bar}] {progress * 100:5.1f}% {stage}{steps} {elapsed:.0f}s\x1b[K")
            if job.status.is_final:
                self._stream.write("\n")
        else:
            key = (stage, int(progress * 10))
            if key != self._last_line or job.status.is_final:
                self._last_line = key
                self._stream.write(f"progress {progress * 100:.0f}% {stage}{steps} ({elapsed:.1f}s)\n")
        self._stream.flush()


async def generate_once(settings: Settings, params: T2VParams, out: Path, view: ProgressView) -> Job:
    """Start a worker, run one job on it, copy the video to `out`; the job tells how it went."""
    # Imported here: the service module pulls in HTTP clients that `serve --help` does not need.
    from server.jobs.service import JobService

    clock = SystemClock()
    with tempfile.TemporaryDirectory(prefix="ltx2-generate-") as results:
        store = InMemoryJobStore(1, SharedDirStorage(Path(results)), clock)
        # One worker on --device: a single video has no use for --gpus.
        worker = WorkerSupervisor(
            worker_config_from(settings), store, clock, start_timeout=settings.worker_start_timeout
        )
        supervisor = WorkerPool([worker], [settings.device])
        store.attach_pool(supervisor)
        service = JobService(settings, store, clock)
        service.events.add_listener(view)
        spec = job_spec(params)
        service.intake.check_request(spec)  # before the worker starts: a refused request loads no model
        await service.open()
        try:
            image, keyframe_images = params.input_images()
            job = await service.submit(spec, image, None, None, keyframe_images=keyframe_images)
            while not job.status.is_final:
                if supervisor.state is WorkerState.LOAD_FAILED:
                    raise RuntimeError(f"the model could not be loaded: {supervisor.last_load_error}")
                try:
                    await asyncio.wait_for(job.finished.wait(), 0.2)
                except asyncio.TimeoutError:
                    pass
            if job.status is JobStatus.COMPLETED and job.output is not None:
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(job.output, out)
            return job
        finally:
            await service.close()  # stops the worker too


def run_generate(settings: Settings, args: argparse.Namespace, stderr: TextIO = sys.stderr) -> int:
    def error(message: object, status: int) -> int:
        print(f"error: {message}", file=stderr)
        return status

    try:
        params = parameters_from(args)
    except ValidationError as exc:
        return error("; ".join(dict.fromkeys(describe_validation_error(e) for e in exc.errors())), EXIT_BAD_INPUT)
    except (FileNotFoundError, OSError, ValueError) as exc:
        return error(exc, EXIT_BAD_INPUT)
    problems = weights_problems(worker_config_from(settings))
    if problems:
        return error("the model's weights are incomplete:\n  " + "\n  ".join(problems), EXIT_FAILED)
    out = Path(args.out)
    view = ProgressView(stderr, stderr.isatty())
    try:
        job = asyncio.run(generate_once(settings, params, out, view))
    except KeyboardInterrupt:
        # asyncio.run cancelled the job and stopped the worker on the way out (a second Ctrl-C stops at once).
        # On a terminal the bar's line is still open: end it first.
        stopped = "interrupted (Ctrl-C): the job was stopped, no video written"
        print(("\n" if view.is_terminal else "") + stopped, file=stderr)
        return EXIT_INTERRUPTED
    except ServiceError as exc:
        return error(exc.message, EXIT_BAD_INPUT)
    except RuntimeError as exc:
        return error(exc, EXIT_FAILED)
    if job.status is not JobStatus.COMPLETED:
        return error(job.error, EXIT_BAD_INPUT if job.fault == FAULT_INPUT else EXIT_FAILED)
    metrics = job.metrics(job.finished_at or 0.0)
    if job.enhanced_prompt is not None:
        print(f"enhanced prompt: {job.enhanced_prompt}", file=stderr)
    print(f"wrote {out} ({out.stat().st_size} bytes, seed {job.seed}, {metrics['inference_time']:.1f} s)", file=stderr)
    print(str(out))
    return 0
