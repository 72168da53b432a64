"""On a CUDA machine: the speed options on the tiny model in bf16. Each attention kernel's transformer pass
against PyTorch's SDPA (exact kernels within bf16 rounding; SageAttention's difference printed and bounded),
a compiled pass against the eager one, and a whole request with the exact options together. A kernel whose
package is not installed is skipped, naming it."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

import pipelines
from pipelines.interface import JobSpec
from pipelines.speed import (
    SpeedOptions,
    SpeedOptionUnavailable,
    check_speed_options,
    compile_repeated_blocks,
    set_attention,
)
from tests.support.media_probe import probe_mp4
from tests.support.transformer_pass import one_stage_inputs, prompt_pass

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
REQUEST = JobSpec("a red kite", "blurry", 256, 256, 17, 24, 1, 4.0)


@pytest.fixture(scope="module")
def generator():
    return pipelines.load_generator("tiny", device="cuda", dtype="bf16", recipe="one-stage", num_inference_steps=2)


def relative_rms(value: torch.Tensor, reference: torch.Tensor) -> float:
    return float((value.float() - reference.float()).pow(2).mean().sqrt() / reference.float().pow(2).mean().sqrt())


@pytest.mark.parametrize("attention", ["cudnn", "flash4", "sage"])
def test_attention_kernel_pass_against_sdpa(generator, attention):
    device = torch.device("cuda")
    try:
        check_speed_options(SpeedOptions(attention=attention), device)
    except SpeedOptionUnavailable as error:
        pytest.skip(str(error))
    transformer = generator.pipe.transformer
    with torch.inference_mode():
        inputs = one_stage_inputs(generator, REQUEST, size=256)
        undo = set_attention(transformer, "sdpa", device)
        reference = prompt_pass(*inputs)
        undo()
        undo = set_attention(transformer, attention, device)
        try:
            got = prompt_pass(*inputs)
        finally:
            undo()
    differences = [relative_rms(g, r) for g, r in zip(got, reference, strict=True)]
    print(f"attention {attention}: relative RMS difference from sdpa (video, audio) {differences}")
    bound = 0.1 if attention == "sage" else 0.02  # sage quantises queries and keys to 8 bits
    assert all(d < bound for d in differences)


def test_compiled_pass_against_eager_on_cuda(generator):
    with torch.inference_mode():
        inputs = one_stage_inputs(generator, REQUEST, size=256)
        eager = prompt_pass(*inputs)
        undo = compile_repeated_blocks(generator.pipe.transformer)
        try:
            compiled = prompt_pass(*inputs)
        finally:
            undo()
    assert all(relative_rms(c, e) < 0.02 for c, e in zip(compiled, eager, strict=True))


def test_exact_options_together_make_the_requested_video(tmp_path):
    attention = "cudnn" if torch.backends.cudnn.is_available() else "sdpa"
    together = pipelines.load_generator(
        "tiny",
        device="cuda",
        dtype="bf16",
        num_inference_steps=2,
        compile="regional",
        attention=attention,
        decode_chunk_frames=0,
    )
    assert f"compile regional, attention {attention}, video decode in one pass" in together.description
    picture = tmp_path / "in.png"
    Image.radial_gradient("L").convert("RGB").save(picture)
    for index in range(2):  # the second request reuses the compiled blocks and the cached negative prompt
        together.generate(REQUEST, picture, tmp_path / f"out{index}.mp4", lambda *report: None)
        info = probe_mp4(tmp_path / f"out{index}.mp4")
        assert (info["width"], info["height"], info["frame_count"]) == (256, 256, 17)
