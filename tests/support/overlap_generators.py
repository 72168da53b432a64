"""A generator whose mux is slow, for the worker's overlap of one job's mux with the next job's denoising;
loaded by the worker as ``--model tests.support.overlap_generators:slow_mux``.

Its denoising is a few short steps; its mux is the real one (ffmpeg), fed one small chunk every
``MUX_CHUNK_SECONDS``, so it lasts about ``MUX_CHUNKS * MUX_CHUNK_SECONDS`` and can be stopped between chunks.
'crash' in the prompt kills the worker with SIGKILL during the denoising.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np

from pipelines.interface import GenerationResult
from pipelines.mux import mux_video

DENOISING_STEPS = 4
STEP_SECONDS = 0.1
MUX_CHUNKS = 12
MUX_CHUNK_SECONDS = 0.15


class SlowMuxGenerator:
    def generate(self, params, image_path, output_path, on_progress, keyframe_paths=()) -> GenerationResult:
        for step in range(DENOISING_STEPS + 1):
            on_progress("denoising", step, DENOISING_STEPS)
            if "crash" in params.prompt and step == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(STEP_SECONDS)
        frames = np.zeros((MUX_CHUNKS, params.height, params.width, 3), dtype=np.uint8)
        on_progress("decoding_video", MUX_CHUNKS, MUX_CHUNKS)
        on_progress("muxing", 0, 1)
        audio = np.zeros((2, 24000), dtype=np.float32)
        mux_video(_slowly(frames), audio, 24000, params.fps, output_path, "ultrafast", num_frames=MUX_CHUNKS)
        on_progress("muxing", 1, 1)
        return GenerationResult(output_path=output_path, seed=params.seed)


def _slowly(frames: np.ndarray):
    for index in range(len(frames)):
        time.sleep(MUX_CHUNK_SECONDS)
        yield frames[index : index + 1]


def slow_mux() -> SlowMuxGenerator:
    return SlowMuxGenerator()
