"""Small generators for worker fault tests, loaded by the worker as
``--model tests.support.fixture_generators:scripted``.

They run in the real worker subprocess. The prompt scripts the behaviour, so one server can show
crashes, failures and hangs followed by jobs that still complete.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from pipelines.interface import GenerationResult, InvalidInputError, JobSpec, MuxError
from pipelines.mux import mux_video


def write_test_video(params: JobSpec, output_path: Path) -> None:
    """A real mp4 of the requested size, frames and fps with a tone, made by ffmpeg's own sources."""
    duration = params.num_frames / params.fps
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-v",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={params.width}x{params.height}:rate={params.fps}",
        "-f",
        "lavfi",
        "-i",
        f"sine=frequency=440:sample_rate=24000:duration={duration}",
        "-frames:v",
        str(params.num_frames),
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-t",
        f"{duration}",
        "-movflags",
        "+faststart",
        str(output_path),
    ]
    subprocess.run(command, check=True, capture_output=True)


def allocate_until_memory_error(headroom_bytes: int = 512 * 1024 * 1024) -> None:
    """Run out of memory for real, but only within a cap on this process's address space, so the
    machine is never short of memory; the cap is lifted again before returning."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as statm:
        current = int(statm.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (current + headroom_bytes, hard))
    hoard = []
    try:
        while True:
            # np.empty reserves without touching the pages: out of (capped) memory in milliseconds.
            hoard.append(np.empty(32 * 1024 * 1024, dtype=np.uint8))
    finally:
        hoard.clear()
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def encode_onto_full_disk() -> None:
    """ffmpeg encoding onto /dev/full, where every write fails with ENOSPC as on a full results disk;
    raised as the worker's MuxError with ffmpeg's own words. (Written straight to the device: the
    real mux's write-then-rename would replace the device node when run as root.)"""
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=256x256:rate=8"]
    command += ["-frames:v", "8", "-c:v", "libx264", "-preset", "ultrafast", "-f", "mp4", "-y", "/dev/full"]
    result = subprocess.run(command, capture_output=True)
    raise MuxError(f"ffmpeg exited with status {result.returncode}: {result.stderr.decode(errors='replace')[-500:]}")


class ScriptedGenerator:
    """'crash' in the prompt kills the worker with SIGKILL, 'fail' raises, 'hang' sleeps for a
    minute, 'unreadable' reports bad input, 'oom' allocates until MemoryError, 'steps' runs 100
    short denoising steps (to be cancelled between them), 'diskfull' encodes onto a full device;
    any other prompt makes a short real video."""

    def generate(self, params, image_path, output_path, on_progress, keyframe_paths=()) -> GenerationResult:
        prompt = params.prompt
        on_progress("denoising", 1, 2)
        if "steps" in prompt:
            for step in range(1, 101):
                time.sleep(0.05)
                on_progress("denoising", step, 100)
            on_progress("decoding", 0, 1)
        if "oom" in prompt:
            allocate_until_memory_error()
        if "crash" in prompt:
            os.kill(os.getpid(), signal.SIGKILL)
        if "fail" in prompt:
            raise RuntimeError("scripted failure")
        if "hang" in prompt:
            time.sleep(60)
        if "unreadable" in prompt:
            raise InvalidInputError("image: cannot decode (scripted)")
        if "badmux" in prompt:
            # The real mux with a preset x264 does not know: ffmpeg fails and MuxError carries its stderr.
            frames = np.zeros((params.num_frames, params.height, params.width, 3), dtype=np.uint8)
            audio = np.zeros((2, 24000), dtype=np.float32)
            mux_video(frames, audio, 24000, params.fps, output_path, "no-such-preset")
        if "diskfull" in prompt:
            encode_onto_full_disk()
        if "slow" in prompt:
            time.sleep(1.0)
        on_progress("denoising", 2, 2)
        write_test_video(params, output_path)
        return GenerationResult(output_path=output_path, seed=params.seed)


def scripted() -> ScriptedGenerator:
    return ScriptedGenerator()


class FastGenerator:
    """Copies one small mp4 made at load time: the worker's share of a job is a few milliseconds,
    so load tests measure the API process."""

    def __init__(self) -> None:
        self._video = Path(tempfile.mkdtemp(prefix="ltx2-fast-")) / "clip.mp4"
        params = JobSpec(
            prompt="", negative_prompt="", width=256, height=256, num_frames=1, fps=8, seed=0, guidance_scale=1
        )
        write_test_video(params, self._video)

    def generate(self, params, image_path, output_path, on_progress, keyframe_paths=()) -> GenerationResult:
        on_progress("denoising", 1, 1)
        shutil.copyfile(self._video, output_path)
        return GenerationResult(output_path=output_path, seed=params.seed)


def fast() -> FastGenerator:
    return FastGenerator()


def broken() -> ScriptedGenerator:
    raise RuntimeError("scripted load failure")


def hangs_while_loading() -> ScriptedGenerator:
    time.sleep(600)
    return ScriptedGenerator()


class _OutOfGpuMemoryOnRequest:
    """The tiny LTX-2, whose transformer raises CUDA's out-of-memory error mid-denoise when the prompt
    says 'oom': the real error type, raised where a real one would be, on a machine without a GPU."""

    def __init__(self) -> None:
        import torch

        import pipelines

        self.inner = pipelines.load_generator("tiny", recipe="one-stage")
        self.armed = False

        def maybe_run_out(module, args):
            if self.armed:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

        self.inner.pipe.transformer.register_forward_pre_hook(maybe_run_out)

    def generate(self, params, image_path, output_path, on_progress, keyframe_paths=()) -> GenerationResult:
        self.armed = "oom" in params.prompt
        return self.inner.generate(params, image_path, output_path, on_progress)


def tiny_that_runs_out_of_gpu_memory() -> _OutOfGpuMemoryOnRequest:
    return _OutOfGpuMemoryOnRequest()


class TinyOrScripted:
    """The tiny LTX-2 for ordinary prompts; prompts starting 'scripted:' get ScriptedGenerator's
    behaviours ('scripted:fast' copies a small clip). Each finished generation appends its output
    path to the file named by LTX2_TEST_LEDGER, so a test can tell whether any job ran twice."""

    def __init__(self) -> None:
        import pipelines

        self.tiny = pipelines.load_generator("tiny")
        self.scripted = ScriptedGenerator()
        self.fast = FastGenerator()
        self.description = getattr(self.tiny, "description", "tiny")
        self.ledger = os.environ.get("LTX2_TEST_LEDGER")

    def generate(self, params, image_path, output_path, on_progress, keyframe_paths=()) -> GenerationResult:
        prompt = params.prompt
        if prompt.startswith("scripted:fast"):
            result = self.fast.generate(params, image_path, output_path, on_progress)
        elif prompt.startswith("scripted:"):
            result = self.scripted.generate(params, image_path, output_path, on_progress)
        else:
            result = self.tiny.generate(params, image_path, output_path, on_progress)
        if self.ledger:
            with open(self.ledger, "a") as ledger:
                ledger.write(f"{output_path}\n")
        return result


def tiny_or_scripted() -> TinyOrScripted:
    return TinyOrScripted()


class _DescribesItsPlacement(ScriptedGenerator):
    """The scripted generator whose description (shown in /ready) says where the worker was put:
    the GPU it was pinned to, how many GPUs torch sees there, and its thread cap."""

    def __init__(self) -> None:
        pinned = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        seen = ""
        if pinned:
            import torch

            seen = f" sees={torch.cuda.device_count()}"
        self.description = f"pinned={pinned or '-'}{seen} threads={os.environ.get('OMP_NUM_THREADS', '-')}"


def describes_its_placement() -> _DescribesItsPlacement:
    return _DescribesItsPlacement()
