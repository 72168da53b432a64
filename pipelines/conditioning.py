"""The conditioning images, prepared as Lightricks' pipelines prepare them.

The original image is re-encoded once as a single H.264 frame at CRF 33 (LTX-2 was trained on video
frames, so the conditioning frame should carry compression artefacts like theirs), then, for each stage,
scaled with bilinear filtering until it covers that stage's size and centre-cropped to it, and mapped to
[-1, 1]. Stage 1 of the two-stage recipes therefore sees the original image scaled to half size, not a
downscale of the full-size crop.

A request conditions on any number of images (none: text-to-video), each at an output frame with a
strength (``ImageCondition``); pipelines/recipes.py turns them into latent tokens as ltx-core does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from diffusers.pipelines.ltx2.utils import apply_image_conditioning_crf
from PIL import Image

DEFAULT_IMAGE_CRF = 33


@dataclass(frozen=True)
class ImageCondition:
    """An image the video is held to: at output pixel frame ``frame`` (0: the first frame), with ``strength``
    (1: kept exactly, 0: free to change)."""

    pixels: torch.Tensor  # [H, W, 3] uint8, already re-encoded at the image CRF (compressed_like_training)
    frame: int = 0
    strength: float = 1.0


def compressed_like_training(image: Image.Image, crf: int = DEFAULT_IMAGE_CRF) -> torch.Tensor:
    """[H, W, 3] uint8 pixels of ``image`` after one H.264 frame at ``crf`` (0: untouched)."""
    pixels = np.asarray(image.convert("RGB"))
    if crf:
        pixels = apply_image_conditioning_crf(pixels, crf)
    return torch.from_numpy(np.ascontiguousarray(pixels))


def cover_and_crop(pixels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[H, W, 3] pixels -> [1, 3, 1, height, width] floats in [-1, 1]: scaled to cover, centre-cropped."""
    image = pixels.permute(2, 0, 1).unsqueeze(0).to(torch.float32)
    source_h, source_w = image.shape[-2:]
    scale = max(height / source_h, width / source_w)
    # Rounded up: a product a hair under the target would otherwise leave a row or column short.
    scaled_h, scaled_w = math.ceil(source_h * scale), math.ceil(source_w * scale)
    image = torch.nn.functional.interpolate(image, size=(scaled_h, scaled_w), mode="bilinear", align_corners=False)
    top, left = (scaled_h - height) // 2, (scaled_w - width) // 2
    image = image[:, :, top : top + height, left : left + width]
    return (image / 127.5 - 1.0).unsqueeze(2)
