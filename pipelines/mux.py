"""Write frames + audio into an H.264/AAC mp4 with the ffmpeg binary that imageio-ffmpeg ships.

Frames are streamed to ffmpeg's stdin as raw rgb24, so the caller can hand over chunks while it is still
decoding (ffmpeg encodes in its own process meanwhile) and never needs the whole clip in memory.
The output is written to a hidden temporary file next to the target and renamed into place only when
ffmpeg succeeded: a reader never sees a half-written mp4, and a failure leaves nothing behind.

Odd sizes: H.264 in 4:2:0 cannot represent an odd width or height at all (chroma is subsampled by 2 and
the bitstream's cropping unit is 2 pixels), libx264 refuses it. To keep the output EXACTLY the requested
size, odd sizes are encoded as yuv444p (H.264 High 4:4:4, cropping unit 1). Even sizes (the usual case,
including every default) are yuv420p, which every player supports.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .interface import MuxError

_STDERR_TAIL_CHARS = 2000
# x264 output depends on its thread count; pinning it makes the bytes reproducible across machines.
X264_THREADS = 2
# x264's own default quality; lower is better and bigger.
DEFAULT_CRF = 23


def pixel_format_for(width: int, height: int) -> str:
    return "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"


def audio_sample_count(num_frames: int, fps: int, sample_rate: int) -> int:
    return round(num_frames * sample_rate / fps)


def fit_audio_length(audio: np.ndarray, num_samples: int) -> np.ndarray:
    """Trim or pad with silence so audio lasts exactly as long as the video."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None, :]
    if audio.shape[1] >= num_samples:
        return audio[:, :num_samples]
    padding = np.zeros((audio.shape[0], num_samples - audio.shape[1]), dtype=np.float32)
    return np.concatenate([audio, padding], axis=1)


def _as_chunks(frames: np.ndarray | Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    if isinstance(frames, np.ndarray):
        yield frames
    else:
        yield from frames


def _ffmpeg_command(
    *,
    width: int,
    height: int,
    fps: int,
    audio_path: Path,
    channels: int,
    sample_rate: int,
    num_frames: int,
    preset: str,
    crf: int,
    output_path: Path,
) -> list[str]:
    import imageio_ffmpeg

    return [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-y",
        "-fflags",
        "+bitexact",
        # input 0: raw video frames on stdin
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        f"{width}x{height}",
        "-framerate",
        str(fps),
        "-i",
        "pipe:0",
        # input 1: float PCM already trimmed/padded to the video's duration
        "-f",
        "f32le",
        "-ar",
        str(sample_rate),
        "-ac",
        str(channels),
        "-i",
        str(audio_path),
        "-map",
        "0:v:0",
        "-map",
        "1:a:0",
        "-frames:v",
        str(num_frames),
        "-c:v",
        "libx264",
        "-preset",
        preset,
        "-crf",
        str(crf),
        "-pix_fmt",
        pixel_format_for(width, height),
        "-threads",
        str(X264_THREADS),
        "-r",
        str(fps),
        "-c:a",
        "aac",
        "-b:a",
        "128k",
        "-map_metadata",
        "-1",
        "-flags:v",
        "+bitexact",
        "-flags:a",
        "+bitexact",
        "-movflags",
        "+faststart",
        "-f",
        "mp4",
        str(output_path),
    ]


def _stderr_tail(stderr_file) -> str:
    stderr_file.seek(0)
    return stderr_file.read().decode("utf-8", "replace")[-_STDERR_TAIL_CHARS:]


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def mux_video(
    frames: np.ndarray | Iterable[np.ndarray],
    audio: np.ndarray,
    sample_rate: int,
    fps: int,
    output_path: Path,
    preset: str,
    *,
    num_frames: int | None = None,
    crf: int = DEFAULT_CRF,
) -> None:
    """Encode uint8 frames [F, H, W, 3] (an array, or an iterable of such chunks) and float audio
    [channels, samples] into output_path.

    num_frames is required when frames is an iterable (the audio is cut to num_frames / fps seconds
    before the first frame arrives); chunks beyond it are ignored.
    """
    output_path = Path(output_path)
    if num_frames is None:
        if not isinstance(frames, np.ndarray):
            raise ValueError("num_frames is required when frames is an iterable of chunks")
        num_frames = int(frames.shape[0])
    audio = fit_audio_length(audio, audio_sample_count(num_frames, fps, sample_rate))

    token = uuid.uuid4().hex[:12]
    partial_path = output_path.with_name(f".{output_path.name}.{token}.partial")
    audio_path = output_path.with_name(f".{output_path.name}.{token}.f32le")
    # Interleaved little-endian float32 is what -f f32le expects.
    audio.T.astype("<f4").tofile(audio_path)

    chunks = _as_chunks(frames)
    try:
        first = next(chunks, None)
        if first is None or first.ndim != 4 or first.shape[-1] != 3 or first.dtype != np.uint8:
            raise ValueError("frames must be uint8 [F, H, W, 3] with at least one frame")
        height, width = first.shape[1], first.shape[2]
        command = _ffmpeg_command(
            width=width,
            height=height,
            fps=fps,
            audio_path=audio_path,
            channels=audio.shape[0],
            sample_rate=sample_rate,
            num_frames=num_frames,
            preset=preset,
            crf=crf,
            output_path=partial_path,
        )
        with tempfile.TemporaryFile() as stderr_file:
            # stderr goes to a file, not a pipe: a chatty ffmpeg can never block on a full pipe buffer.
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=stderr_file)
            try:
                _feed_frames(process, first, chunks, num_frames, width, height)
                return_code = process.wait()
            except BaseException:
                process.kill()
                process.wait()
                raise
            if return_code != 0:
                raise MuxError(f"ffmpeg exited with status {return_code}: {_stderr_tail(stderr_file)}")
        os.replace(partial_path, output_path)
    finally:
        _remove_quietly(audio_path)
        _remove_quietly(partial_path)


def _feed_frames(
    process: subprocess.Popen, first: np.ndarray, rest: Iterator[np.ndarray], num_frames: int, width: int, height: int
) -> None:
    written = 0
    stdin = process.stdin
    assert stdin is not None  # the process is started with stdin=PIPE
    try:
        for chunk in _prepend(first, rest):
            if chunk.shape[1:] != (height, width, 3):
                raise ValueError(f"frame chunk has shape {chunk.shape[1:]}, expected {(height, width, 3)}")
            chunk = chunk[: num_frames - written]
            if len(chunk):
                stdin.write(np.ascontiguousarray(chunk, dtype=np.uint8).tobytes())
                written += len(chunk)
            if written >= num_frames:
                break
    except BrokenPipeError:
        pass  # ffmpeg died early (bad arguments): its exit status and stderr tell why
    finally:
        try:
            stdin.close()
        except BrokenPipeError:
            pass


def _prepend(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest
