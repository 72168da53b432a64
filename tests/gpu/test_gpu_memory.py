"""On a CUDA machine: the memory and precision options of pipelines.load_generator. fp8 matmuls through
cuBLAS (torch._scaled_mm with row-wise scales), offloaded weights waiting in pinned host memory, and every
option generating with the tiny model in bf16. Skipped where torch sees no CUDA device."""

from __future__ import annotations

import hashlib

import pytest
import torch
from PIL import Image

import pipelines
from pipelines.fp8 import Fp8Linear
from pipelines.interface import JobSpec

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
PARAMS = JobSpec("a red kite", "blurry", 192, 128, 17, 24, 1, 4.0)


def fp8_matmul_supported() -> bool:
    return torch.cuda.get_device_capability() >= (8, 9)  # Ada, Hopper and newer


@pytest.mark.skipif(not torch.cuda.is_available() or not fp8_matmul_supported(), reason="needs fp8 tensor cores")
def test_fp8_compute_runs_cublas_scaled_matmul_with_the_cpu_arithmetic():
    torch.manual_seed(0)
    layer = torch.nn.Linear(512, 256).to(torch.bfloat16)
    x = torch.randn(3, 40, 512, dtype=torch.bfloat16)
    on_cpu = Fp8Linear(layer, torch.bfloat16, compute=True)(x)
    on_gpu = Fp8Linear(layer.cuda(), torch.bfloat16, compute=True)(x.cuda())
    # Same quantised operands; only the accumulation order (and bf16 output rounding) differs.
    assert (on_gpu.cpu().float() - on_cpu.float()).abs().max() <= 2e-2 * on_cpu.float().abs().max()


def generate(generator, tmp_path, name: str) -> str:
    picture = tmp_path / "in.png"
    Image.radial_gradient("L").convert("RGB").save(picture)
    output = tmp_path / f"{name}.mp4"
    generator.generate(PARAMS, picture, output, lambda *args: None)
    return hashlib.sha256(output.read_bytes()).hexdigest()


@pytest.mark.parametrize("offload", ["text-encoder", "model"])
def test_offloaded_weights_wait_pinned_and_give_the_same_video(tmp_path, offload):
    resident = pipelines.load_generator("tiny", device="cuda", offload="none", num_inference_steps=2)
    offloaded = pipelines.load_generator("tiny", device="cuda", offload=offload, num_inference_steps=2)
    assert generate(offloaded, tmp_path, "offloaded") == generate(resident, tmp_path, "resident")
    # After a request Gemma is off the GPU, in pinned memory (fast copies, none back); under model offload
    # the transformer is still there: it left only for the prompt, not between the stages.
    encoder_weight = next(offloaded.pipe.text_encoder.parameters())
    assert encoder_weight.device.type == "cpu" and encoder_weight.is_pinned()
    assert next(offloaded.pipe.transformer.parameters()).device.type == "cuda"


@pytest.mark.parametrize(
    "options", [dict(fp8="storage"), dict(fp8="compute"), dict(stage2_lora="merged"), dict(stage2_lora="merged-fp8")]
)
def test_every_memory_option_generates_on_cuda(tmp_path, options):
    generator = pipelines.load_generator("tiny", device="cuda", num_inference_steps=2, **options)
    generate(generator, tmp_path, "out")
