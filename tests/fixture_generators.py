"""Small generators for worker fault tests, loaded by the worker as ``--model tests.fixture_generators:scripted``.

They run in the real worker subprocess. The prompt scripts the behaviour, so one server can show
crashes, failures and hangs followed by jobs that still complete.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from pipelines.interface import GenerationParams, GenerationResult, InvalidInputError
from pipelines.mux import mux_video


def write_test_video(params: GenerationParams, output_path: Path) -> None:
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


class ScriptedGenerator:
    """'crash' in the prompt kills the worker with SIGKILL, 'fail' raises, 'hang' sleeps for a
    minute, 'unreadable' reports bad input; any other prompt makes a short real video."""

    def generate(self, params, image_path, output_path, on_progress) -> GenerationResult:
        prompt = params.prompt
        on_progress("denoising", 1, 2)
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
        if "slow" in prompt:
            time.sleep(1.0)
        on_progress("denoising", 2, 2)
        write_test_video(params, output_path)
        return GenerationResult(output_path=output_path, seed=params.seed)


def scripted() -> ScriptedGenerator:
    return ScriptedGenerator()


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

    def generate(self, params, image_path, output_path, on_progress) -> GenerationResult:
        self.armed = "oom" in params.prompt
        return self.inner.generate(params, image_path, output_path, on_progress)


def tiny_that_runs_out_of_gpu_memory() -> _OutOfGpuMemoryOnRequest:
    return _OutOfGpuMemoryOnRequest()
