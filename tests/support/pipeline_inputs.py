"""Inputs the pipeline tests share: a noise picture, a small job spec, a file's digest."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from pipelines.interface import JobSpec


def write_noise_picture(path: Path) -> Path:
    """A 320x180 RGB picture of seeded noise (landscape, so portrait requests exercise the crop)."""
    pixels = np.random.RandomState(0).randint(0, 255, (180, 320, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def small_spec(prompt: str, **overrides) -> JobSpec:
    """A 256x256, 9-frame request: small enough for the tiny models in a second or two."""
    values: dict = dict(
        prompt=prompt, negative_prompt="blurry", width=256, height=256, num_frames=9, fps=24, seed=7,
        guidance_scale=4.0,
    )  # fmt: skip
    values.update(overrides)
    return JobSpec(**values)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
