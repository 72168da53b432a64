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

import contextlib
import contextvars
import os
import queue
import subprocess
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from .interface import MuxError

_STDERR_TAIL_CHARS = 2000
# x264 output depends on its thread count: a fixed count gives the same bytes on every host with it.
# The default uses the host's cores (x264 gains little past 16); callers may pin it.
MAX_DEFAULT_X264_THREADS = 16
# Decoded chunks waiting for the writer thread: one being written and one ready is enough to keep
# ffmpeg fed while the next chunk decodes, and bounds the memory held to two chunks.
_WRITER_QUEUE_CHUNKS = 2
# How often a mux waiting on ffmpeg asks whether it should stop (see stop_muxing_when).
_STOP_POLL_SECONDS = 0.1
# x264's own default quality; lower is better and bigger.
DEFAULT_CRF = 23


def default_x264_threads() -> int:
    return max(1, min(os.cpu_count() or 1, MAX_DEFAULT_X264_THREADS))


# Checked while a mux runs in this context (see stop_muxing_when); None: never stopped from outside.
_stop_check: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar("mux_stop_check", default=None)


@contextlib.contextmanager
def stop_muxing_when(check: Callable[[], None]) -> Iterator[None]:
    """Every mux_video in this context calls ``check`` while it waits for ffmpeg (every
    ``_STOP_POLL_SECONDS``); whatever ``check`` raises kills ffmpeg and leaves mux_video, which then
    leaves nothing behind. Lets a caller that cannot reach the mux (it runs deep in a generator) stop it."""
    token = _stop_check.set(check)
    try:
        yield
    finally:
        _stop_check.reset(token)


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
    threads: int,
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
        str(threads),
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
    threads: int | None = None,
) -> None:
    """Encode uint8 frames [F, H, W, 3] (an array, or an iterable of such chunks) and float audio
    [channels, samples] into output_path.

    num_frames is required when frames is an iterable (the audio is cut to num_frames / fps seconds
    before the first frame arrives); chunks beyond it are ignored. A writer thread hands the chunks to
    ffmpeg while the iterable produces the next one (a decode overlaps the encode of the chunk before),
    so a chunk must not be modified once yielded. threads: x264's (None: default_x264_threads()).
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
            threads=threads or default_x264_threads(),
        )
        with tempfile.TemporaryFile() as stderr_file:
            # stderr goes to a file, not a pipe: a chatty ffmpeg can never block on a full pipe buffer.
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=stderr_file)
            writer = _FrameWriter(process)
            try:
                _feed_frames(writer, first, chunks, num_frames, width, height)
                return_code = _wait_for(process)
            except BaseException:
                process.kill()
                writer.abandon()
                process.wait()
                raise
            if return_code != 0:
                raise MuxError(f"ffmpeg exited with status {return_code}: {_stderr_tail(stderr_file)}")
        os.replace(partial_path, output_path)
    finally:
        _remove_quietly(audio_path)
        _remove_quietly(partial_path)


def _wait_for(process: subprocess.Popen) -> int:
    check = _stop_check.get()
    if check is None:
        return process.wait()
    while True:
        check()
        try:
            return process.wait(_STOP_POLL_SECONDS)
        except subprocess.TimeoutExpired:
            pass


def _feed_frames(
    writer: _FrameWriter, first: np.ndarray, rest: Iterator[np.ndarray], num_frames: int, width: int, height: int
) -> None:
    """Checks and trims each chunk here (the caller's thread, which also produces them); the writer
    thread writes them. Returns once every chunk is written and ffmpeg's input closed, or ffmpeg stopped
    reading; on an exception the caller kills ffmpeg and abandons the writer."""
    written = 0
    check = _stop_check.get()
    for chunk in _prepend(first, rest):
        if check is not None:
            check()
        if chunk.shape[1:] != (height, width, 3):
            raise ValueError(f"frame chunk has shape {chunk.shape[1:]}, expected {(height, width, 3)}")
        chunk = chunk[: num_frames - written]
        if len(chunk) and not writer.put(chunk):
            break  # ffmpeg died early (bad arguments): its exit status and stderr tell why
        written += len(chunk)
        if written >= num_frames:
            break
    writer.close()


class _FrameWriter:
    """Writes chunks to ffmpeg's stdin from a thread of its own, through a small bounded queue."""

    _DONE = None

    def __init__(self, process: subprocess.Popen) -> None:
        assert process.stdin is not None  # the process is started with stdin=PIPE
        self._stdin = process.stdin
        self._chunks: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=_WRITER_QUEUE_CHUNKS)
        self._stopped = threading.Event()  # the writer is done (all written, or ffmpeg stopped reading)
        self._thread = threading.Thread(target=self._write_all, name="ltx2-mux-writer", daemon=True)
        self._thread.start()

    def put(self, chunk: np.ndarray) -> bool:
        """Queue a chunk; False once ffmpeg stopped reading (the chunk is dropped)."""
        # The buffer itself goes to the pipe: no bytes copy unless the chunk is not C-contiguous uint8.
        chunk = np.ascontiguousarray(chunk, dtype=np.uint8)
        while not self._stopped.is_set():
            try:
                self._chunks.put(chunk, timeout=_STOP_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def close(self) -> None:
        """After the last chunk: let the writer finish and close ffmpeg's stdin (its end of input)."""
        while self._thread.is_alive():
            try:
                self._chunks.put(self._DONE, timeout=_STOP_POLL_SECONDS)
                break
            except queue.Full:
                continue
        self._thread.join()

    def abandon(self) -> None:
        """After ffmpeg was killed: the writer fails on the broken pipe and exits; wait for it."""
        self._stopped.set()
        self._thread.join()

    def _write_all(self) -> None:
        try:
            while not self._stopped.is_set():
                try:
                    chunk = self._chunks.get(timeout=_STOP_POLL_SECONDS)
                except queue.Empty:
                    continue
                if chunk is self._DONE:
                    break
                self._stdin.write(chunk.data.cast("B"))
        except (BrokenPipeError, ValueError, OSError):
            pass  # ffmpeg stopped reading: its exit status and stderr tell why
        finally:
            self._stopped.set()
            try:
                self._stdin.close()
            except (BrokenPipeError, OSError):
                pass


def _prepend(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest
