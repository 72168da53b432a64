"""Probe an mp4 with PyAV so tests can assert on what a client would actually receive."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av


def _count_video_frames(container: av.container.InputContainer, stream) -> int:
    # stream.frames comes from the container index and can be 0 for some muxers: decode to be sure.
    return sum(1 for _ in container.decode(stream))


def probe_mp4(path: Path | str) -> dict:
    """Return width, height, frame_count, fps, video_codec, pix_fmt, audio_codec, audio_duration,
    audio_sample_rate (audio_* are None when the file has no audio stream)."""
    info: dict = {}
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        info["width"] = video.codec_context.width
        info["height"] = video.codec_context.height
        info["video_codec"] = video.codec_context.name
        info["pix_fmt"] = video.codec_context.pix_fmt
        rate = video.average_rate or video.guessed_rate or video.base_rate
        info["fps"] = float(Fraction(rate)) if rate else None
        info["video_duration"] = float(video.duration * video.time_base) if video.duration is not None else None
        info["container_duration"] = container.duration / av.time_base if container.duration is not None else None
        audio_streams = container.streams.audio
        if audio_streams:
            audio = audio_streams[0]
            info["audio_codec"] = audio.codec_context.name
            info["audio_sample_rate"] = audio.codec_context.sample_rate
            info["audio_channels"] = audio.codec_context.channels
            info["audio_duration"] = float(audio.duration * audio.time_base) if audio.duration is not None else None
        else:
            info.update(audio_codec=None, audio_sample_rate=None, audio_channels=None, audio_duration=None)
    with av.open(str(path)) as container:
        info["frame_count"] = _count_video_frames(container, container.streams.video[0])
    return info
