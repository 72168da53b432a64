"""The real-model path on the CPU: the tiny LTX-2 written to disk in the 19B's folder layout (diffusers
folder + latent upsampler + stage-2 LoRA) and loaded by the same loader as LTX-2 19B, through every
recipe, every offload mode that runs on a CPU, and fp8 storage."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from PIL import Image

import pipelines
from pipelines.interface import GenerationParams
from pipelines.tiny import save_tiny_weights
from tests.media_probe import probe_mp4

FAST = dict(num_inference_steps=2, x264_preset="ultrafast", x264_crf=36, device="cpu")


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("weights")
    save_tiny_weights(directory)
    return directory


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "in.png"
    Image.radial_gradient("L").convert("RGB").resize((200, 300)).save(path)
    return path


def params(**overrides) -> GenerationParams:
    values = dict(
        prompt="a lighthouse at dusk",
        negative_prompt="blurry",
        width=300,
        height=260,
        num_frames=10,
        fps=12,
        seed=7,
        guidance_scale=4.0,
    )
    values.update(overrides)
    return GenerationParams(**values)


def generate(generator, picture: Path, out: Path, **overrides) -> dict:
    generator.generate(params(**overrides), picture, out, lambda *args: None)
    return probe_mp4(out)


@pytest.mark.parametrize("recipe", ["two-stage", "one-stage", "distilled"])
def test_every_recipe_loads_from_disk_and_returns_the_exact_size(tiny_weights, picture, tmp_path, recipe):
    generator = pipelines.load_generator("ltx-2-19b", weights=str(tiny_weights), recipe=recipe, **FAST)
    info = generate(generator, picture, tmp_path / "out.mp4")
    assert (info["width"], info["height"], info["frame_count"]) == (300, 260, 10)
    assert info["audio_codec"] == "aac" and abs(info["audio_duration"] - 10 / 12) <= 1 / 12
    assert f"recipe {recipe}" in generator.description and "offload none" in generator.description


def test_two_stage_generates_at_multiples_of_64_and_one_stage_at_multiples_of_32(tiny_weights):
    two = pipelines.load_generator("ltx-2-19b", weights=str(tiny_weights), recipe="two-stage", **FAST)
    one = pipelines.load_generator("ltx-2-19b", weights=str(tiny_weights), recipe="one-stage", **FAST)
    assert two.spec.spatial_factor * two.pipe.vae_spatial_compression_ratio == 64
    assert one.spec.spatial_factor * one.pipe.vae_spatial_compression_ratio == 32
    assert (two.spec.total_steps, one.spec.total_steps) == (2 + 3, 2)


@pytest.mark.parametrize("offload", ["model", "group", "sequential"])
def test_offload_modes_that_run_on_a_cpu_give_the_same_video(tiny_weights, picture, tmp_path, offload):
    resident = pipelines.load_generator("ltx-2-19b", weights=str(tiny_weights), offload="none", **FAST)
    offloaded = pipelines.load_generator("ltx-2-19b", weights=str(tiny_weights), offload=offload, **FAST)
    assert f"offload {offload}" in offloaded.description
    generate(resident, picture, tmp_path / "resident.mp4")
    info = generate(offloaded, picture, tmp_path / "offloaded.mp4")
    assert (info["width"], info["height"], info["frame_count"]) == (300, 260, 10)
    # Offloading moves weights, never changes arithmetic: the same bytes.
    assert _digest(tmp_path / "offloaded.mp4") == _digest(tmp_path / "resident.mp4")


def test_fp8_storage_of_the_transformer_still_makes_the_video(tiny_weights, picture, tmp_path):
    import torch

    generator = pipelines.load_generator("ltx-2-19b", weights=str(tiny_weights), fp8=True, **FAST)
    weight = generator.pipe.transformer.transformer_blocks[0].attn1.to_q.base_layer.weight
    assert weight.dtype == torch.float8_e4m3fn
    info = generate(generator, picture, tmp_path / "fp8.mp4")
    assert (info["width"], info["height"], info["frame_count"]) == (300, 260, 10)


def test_the_stage_two_lora_is_loaded_and_off_between_stages(tiny_weights):
    generator = pipelines.load_generator("ltx-2-19b", weights=str(tiny_weights), **FAST)
    pipe = generator.pipe
    assert pipe.get_list_adapters() == {"transformer": ["stage2_distilled"]}
    lora_layer = pipe.transformer.transformer_blocks[0].attn1.to_q
    assert lora_layer.disable_adapters  # stage 1 and decoding run without it


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
