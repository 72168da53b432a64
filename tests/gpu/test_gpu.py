"""On a CUDA machine: the tiny model in the real weights layout, loaded in bf16 onto the GPU with the
automatic offload choice and each explicit mode. Skipped where torch sees no CUDA device (CI has none;
`pytest -m gpu` on a GPU host runs them)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

import pipelines
from pipelines.interface import JobSpec
from pipelines.tiny import save_tiny_weights
from tests.support.media_probe import probe_mp4

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    directory = tmp_path_factory.mktemp("weights")
    save_tiny_weights(directory)
    return directory


@pytest.mark.parametrize("offload", ["auto", "none", "model", "group", "sequential"])
def test_tiny_weights_generate_on_cuda(tiny_weights, tmp_path, offload):
    generator = pipelines.load_generator(
        "ltx-2-19b", weights=str(tiny_weights), device="cuda", offload=offload, num_inference_steps=2
    )
    assert "cuda bfloat16" in generator.description
    picture = tmp_path / "in.png"
    Image.radial_gradient("L").convert("RGB").save(picture)
    params = JobSpec("a red kite", "", 320, 256, 17, 24, 1, 4.0)
    generator.generate(params, picture, tmp_path / "out.mp4", lambda *args: None)
    info = probe_mp4(tmp_path / "out.mp4")
    assert (info["width"], info["height"], info["frame_count"]) == (320, 256, 17)
