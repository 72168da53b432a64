"""The conditioning image, prepared as Lightricks' pipelines prepare it (ltx_pipelines.utils.media_io):
one H.264 frame at CRF 33 on the original image, then per stage a bilinear cover-scale and centre crop to
[-1, 1]."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import tests.parity.reference  # noqa: F401
from pipelines.conditioning import DEFAULT_IMAGE_CRF, compressed_like_training, cover_and_crop
from tests.parity.record import record


def levels_apart(what: str, ours: np.ndarray, theirs: np.ndarray) -> int:
    """The largest difference between two uint8 images, in levels; identical pixels are required (0)."""
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    levels = int(np.abs(ours.astype(int) - theirs.astype(int)).max())
    record(what, levels, 0, unit="uint8 levels")
    return levels


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    generator = np.random.default_rng(3)
    rows, cols = np.mgrid[0:121, 0:203]  # odd sizes: the codec's even-size crop is exercised
    pixels = np.stack([rows * 2, cols, (rows * cols) % 256], axis=-1) + generator.integers(0, 40, (121, 203, 3))
    path = tmp_path_factory.mktemp("conditioning") / "photo.png"
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path)
    return str(path)


def test_the_default_crf_is_the_reference_one():
    from ltx_pipelines.utils.constants import DEFAULT_IMAGE_CRF as REFERENCE_CRF

    assert DEFAULT_IMAGE_CRF == REFERENCE_CRF == 33


def test_crf_reencode_gives_the_reference_pixels(photo):
    from ltx_pipelines.utils.media_io import decode_image, preprocess

    ours = compressed_like_training(Image.open(photo)).numpy()
    theirs = preprocess(decode_image(photo), crf=DEFAULT_IMAGE_CRF)
    assert ours.shape == theirs.shape == (120, 202, 3)
    assert levels_apart("conditioning image: H.264 CRF 33 re-encode", ours, theirs) == 0
    assert np.abs(ours.astype(int) - np.asarray(Image.open(photo))[:120, :202]).max() > 0  # it did re-encode


def test_an_alpha_channel_is_dropped_as_the_reference_drops_it(photo, tmp_path):
    from ltx_pipelines.utils.media_io import decode_image, preprocess

    rgba = Image.open(photo).convert("RGBA")
    rgba.putalpha(128)
    path = tmp_path / "rgba.png"
    rgba.save(path)
    ours, theirs = compressed_like_training(Image.open(path)).numpy(), preprocess(decode_image(str(path)))
    assert levels_apart("conditioning image: RGBA input, alpha dropped", ours, theirs) == 0


@pytest.mark.parametrize("height, width", [(64, 128), (32, 64), (96, 64), (121, 203), (512, 768)])
def test_cover_and_crop_equals_the_reference_resize_and_normalise(photo, height, width):
    from ltx_pipelines.utils.media_io import load_image_conditioning

    theirs = load_image_conditioning(photo, height, width, torch.float32, torch.device("cpu"), crf=DEFAULT_IMAGE_CRF)
    ours = cover_and_crop(compressed_like_training(Image.open(photo)), height, width)
    assert ours.shape == theirs.shape == (1, 3, 1, height, width)
    diff = (ours - theirs).abs().max().item()
    record(f"conditioning image: cover-scale and crop to {width}x{height}", diff, 1e-6)
    assert diff < 1e-6
