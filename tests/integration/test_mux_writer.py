"""The mux's writer thread: the overlapped mux gives the same bytes as feeding ffmpeg in one synchronous
write, ffmpeg dying under the writer is the MuxError it always was, and a stop check ends a mux."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipelines import mux
from pipelines.interface import MuxError
from pipelines.mux import mux_video, stop_muxing_when

FPS = 12
RATE = 24000


def _frames_and_audio(num_frames=24, width=96, height=64):
    rng = np.random.RandomState(1)
    frames = rng.randint(0, 255, (num_frames, height, width, 3), dtype=np.uint8)
    audio = (rng.rand(2, RATE * 2) * 0.2 - 0.1).astype(np.float32)
    return frames, audio


def _sequential_mux(frames: np.ndarray, audio: np.ndarray, output: Path, threads: int) -> None:
    """ffmpeg fed the way the mux did before its writer thread: the whole clip in one blocking write."""
    num_frames, height, width = frames.shape[:3]
    fitted = mux.fit_audio_length(audio, mux.audio_sample_count(num_frames, FPS, RATE))
    audio_path = output.with_suffix(".f32le")
    fitted.T.astype("<f4").tofile(audio_path)
    command = mux._ffmpeg_command(
        width=width, height=height, fps=FPS, audio_path=audio_path, channels=2, sample_rate=RATE,
        num_frames=num_frames, preset="ultrafast", crf=mux.DEFAULT_CRF, output_path=output, threads=threads,
    )  # fmt: skip
    subprocess.run(command, input=frames.tobytes(), check=True)


@pytest.mark.parametrize("threads", [1, 2])
def test_overlapped_mux_gives_the_sequential_bytes(tmp_path, threads):
    frames, audio = _frames_and_audio()
    sequential = tmp_path / "sequential.mp4"
    _sequential_mux(frames, audio, sequential, threads)
    overlapped = tmp_path / "overlapped.mp4"
    chunks = (frames[start : start + 5] for start in range(0, len(frames), 5))
    mux_video(chunks, audio, RATE, FPS, overlapped, "ultrafast", num_frames=len(frames), threads=threads)
    assert overlapped.read_bytes() == sequential.read_bytes()


def _ffmpeg_children() -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
        if "ffmpeg" in name and int(rest[1]) == os.getpid():
            children.append(int(entry.name))
    return children


def test_ffmpeg_dying_under_the_writer_is_a_mux_error_and_leaves_nothing(tmp_path):
    frames, audio = _frames_and_audio(num_frames=48, width=320, height=240)

    def chunks_that_kill_ffmpeg():
        yield frames[:4]
        for pid in _ffmpeg_children():
            os.kill(pid, signal.SIGKILL)
        for start in range(4, len(frames), 4):
            yield frames[start : start + 4]

    output = tmp_path / "out.mp4"
    with pytest.raises(MuxError, match="ffmpeg exited with status -9"):
        mux_video(chunks_that_kill_ffmpeg(), audio, RATE, FPS, output, "ultrafast", num_frames=len(frames))
    assert list(tmp_path.iterdir()) == []


class _Stopped(BaseException):
    pass


def test_a_stop_check_ends_the_mux_and_leaves_nothing(tmp_path):
    frames, audio = _frames_and_audio()
    calls = []

    def stop_on_third_call():
        calls.append(1)
        if len(calls) >= 3:
            raise _Stopped

    with stop_muxing_when(stop_on_third_call), pytest.raises(_Stopped):
        chunks = (frames[start : start + 2] for start in range(0, len(frames), 2))
        mux_video(chunks, audio, RATE, FPS, tmp_path / "out.mp4", "ultrafast", num_frames=len(frames))
    assert list(tmp_path.iterdir()) == []
    assert _ffmpeg_children() == []
