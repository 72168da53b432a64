"""Generation side of ltx2-server: runs only in the worker process.

Imports torch and diffusers; never imports fastapi or ``server``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .interface import Generator

__all__ = ["load_generator"]

# The tiny model's frames are noise: x264 at its usual CRF 23 spends seconds writing ~70 MB of it per
# default request, CRF 36 writes well under 1 MB, which is all a test model's video needs.
_TINY_DEFAULTS = dict(num_inference_steps=2, x264_preset="ultrafast", x264_crf=36, max_sequence_length=128)


def load_generator(
    model: str,
    *,
    device: str = "cpu",
    x264_preset: str | None = None,
    x264_crf: int | None = None,
    num_inference_steps: int | None = None,
) -> "Generator":
    """Build a ready-to-use Generator. Heavy imports (torch, diffusers) happen here, not at import time."""
    if model != "tiny":
        raise ValueError(f"unknown model {model!r} (known: 'tiny')")
    import os

    import torch

    from .generate import LTX2Generator
    from .tiny import build_tiny_pipeline

    # Use every core the process may run on; torch's default can count hyperthreads or the whole host.
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
    pipe = build_tiny_pipeline().to(device)
    return LTX2Generator(
        pipe,
        num_inference_steps=num_inference_steps or _TINY_DEFAULTS["num_inference_steps"],
        x264_preset=x264_preset or _TINY_DEFAULTS["x264_preset"],
        x264_crf=x264_crf if x264_crf is not None else _TINY_DEFAULTS["x264_crf"],
        max_sequence_length=_TINY_DEFAULTS["max_sequence_length"],
    )
