"""The user's LoRAs (``--loras DIR``, pipelines/loras.py) on the tiny model: real diffusers/peft adapters, real
ffmpeg. Tiny random LoRAs are written as .safetensors files in Lightricks' key format and in diffusers'/peft's.

What is checked: a LoRA changes the video; a request without LoRAs is byte-identical before and after LoRA
requests (also after one that failed midway); scale 0 is the base; two at once; which adapters each stage of
each recipe runs (the distilled LoRA beside the user's in stage 2); the merged and fp8 modes; refusals.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import pipelines
from pipelines.interface import InvalidInputError, JobSpec, LoraChoice
from pipelines.loader import DISTILLED_ADAPTER
from pipelines.lora_files import LoraFolderError
from pipelines.tiny import build_tiny_pipeline, random_lightricks_lora
from tests.support.pipeline_inputs import small_spec, write_noise_picture

FAST = dict(num_inference_steps=2, x264_preset="ultrafast", device="cpu")
# Overlaps the tiny distilled LoRA (attn1.*, ff.net.2) on purpose: both adapters then share layers.
CAMERA_TARGETS = ("attn1.to_q", "attn2.to_k", "ff.net.2")
STYLE_TARGETS = ("attn1.to_v", "audio_ff.net.0.proj")


def lightricks_lora(targets: tuple[str, ...], seed: int, rank: int = 4) -> dict[str, torch.Tensor]:
    """``diffusion_model.<module>.lora_A.weight`` keys, as Lightricks publishes its LTX-2 LoRAs."""
    transformer = build_tiny_pipeline().transformer
    return random_lightricks_lora(transformer, targets=targets, rank=rank, seed=seed, std_a=0.3, std_b=0.3)


def as_diffusers(lora: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {"transformer." + key.removeprefix("diffusion_model."): value for key, value in lora.items()}


def as_peft_down_up(lora: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """peft's save_pretrained names (``base_model.model.``) with kohya's lora_down/lora_up factor names."""
    renamed = {}
    for key, value in lora.items():
        key = "base_model.model." + key.removeprefix("diffusion_model.")
        renamed[key.replace(".lora_A.", ".lora_down.").replace(".lora_B.", ".lora_up.")] = value
    return renamed


@pytest.fixture(scope="module")
def lora_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("loras")
    save_file(lightricks_lora(CAMERA_TARGETS, seed=11), folder / "camera.safetensors")
    save_file(as_diffusers(lightricks_lora(STYLE_TARGETS, seed=12, rank=2)), folder / "style.v2.safetensors")
    return folder


@pytest.fixture(scope="module")
def generator(lora_folder):
    return pipelines.load_generator("tiny", loras=str(lora_folder), **FAST)


@pytest.fixture(scope="module")
def image_path(tmp_path_factory) -> Path:
    return write_noise_picture(tmp_path_factory.mktemp("input") / "input.png")


def request(*loras: LoraChoice) -> JobSpec:
    return dataclasses.replace(small_spec("a cat on a sofa", width=128, height=128), loras=tuple(loras))


def digest(generator, image_path: Path, out: Path, params: JobSpec) -> str:
    generator.generate(params, image_path, out, lambda *args: None)
    return hashlib.sha256(out.read_bytes()).hexdigest()


def lora_layers(transformer) -> list:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [module for module in transformer.modules() if isinstance(module, BaseTunerLayer)]


def assert_at_rest(transformer, resting: list[str]) -> None:
    """Every LoRA layer as at start-up: ``resting`` active (the distilled adapter, or none), all switched off."""
    for layer in lora_layers(transformer):
        assert layer.disable_adapters and list(layer.active_adapters) == resting


def test_a_lora_changes_the_video_and_the_base_is_byte_identical_before_and_after(generator, image_path, tmp_path):
    base = digest(generator, image_path, tmp_path / "base.mp4", request())
    camera = digest(generator, image_path, tmp_path / "camera.mp4", request(LoraChoice("camera", 1.0)))
    again = digest(generator, image_path, tmp_path / "again.mp4", request())
    assert camera != base
    assert again == base
    assert_at_rest(generator.pipe.transformer, [DISTILLED_ADAPTER])
    # Scale 0 leaves the LoRA out: exactly the base.
    assert digest(generator, image_path, tmp_path / "zero.mp4", request(LoraChoice("camera", 0.0))) == base
    half = digest(generator, image_path, tmp_path / "half.mp4", request(LoraChoice("camera", 0.5)))
    assert half not in (base, camera)
    assert digest(generator, image_path, tmp_path / "repeat.mp4", request(LoraChoice("camera", 1.0))) == camera


def test_two_loras_at_once(generator, image_path, tmp_path):
    base = digest(generator, image_path, tmp_path / "base.mp4", request())
    camera = digest(generator, image_path, tmp_path / "camera.mp4", request(LoraChoice("camera", 1.0)))
    style = digest(generator, image_path, tmp_path / "style.mp4", request(LoraChoice("style.v2", 1.0)))
    both = digest(
        generator, image_path, tmp_path / "both.mp4", request(LoraChoice("camera", 1.0), LoraChoice("style.v2", -0.7))
    )
    assert len({base, camera, style, both}) == 4
    assert digest(generator, image_path, tmp_path / "after.mp4", request()) == base


def active_per_pass(generator, image_path: Path, out: Path, params: JobSpec, transformer=None) -> list:
    """(active adapters, switched off) of one LoRA'd layer at each transformer pass of a request, in order."""
    transformer = transformer or generator.pipe.transformer
    layer = transformer.transformer_blocks[0].attn1.to_q
    seen: list = []
    hook = layer.register_forward_pre_hook(
        lambda module, args: seen.append((tuple(module.active_adapters), module.disable_adapters))
    )
    try:
        generator.generate(params, image_path, out, lambda *args: None)
    finally:
        hook.remove()
    return seen


def test_stage_1_runs_the_users_loras_and_stage_2_the_distilled_lora_beside_them(generator, image_path, tmp_path):
    camera = generator.user_loras.loras["camera"].adapter
    seen = active_per_pass(generator, image_path, tmp_path / "a.mp4", request(LoraChoice("camera", 1.0)))
    stage2_passes = 3  # 3 unguided steps
    assert set(seen[:-stage2_passes]) == {((camera,), False)}
    assert set(seen[-stage2_passes:]) == {((camera, DISTILLED_ADAPTER), False)}
    # Without LoRAs the stages run as they always did: stage 1 the base alone, stage 2 the distilled LoRA.
    seen = active_per_pass(generator, image_path, tmp_path / "b.mp4", request())
    assert set(seen[:-stage2_passes]) == {((DISTILLED_ADAPTER,), True)}
    assert set(seen[-stage2_passes:]) == {((DISTILLED_ADAPTER,), False)}


def test_the_distilled_recipe_runs_them_in_both_stages(lora_folder, image_path, tmp_path):
    distilled = pipelines.load_generator("tiny", recipe="distilled", loras=str(lora_folder), **FAST)
    camera = distilled.user_loras.loras["camera"].adapter
    seen = active_per_pass(distilled, image_path, tmp_path / "a.mp4", request(LoraChoice("camera", 1.0)))
    assert set(seen) == {((camera, DISTILLED_ADAPTER), False)}
    assert_at_rest(distilled.pipe.transformer, [DISTILLED_ADAPTER])


@pytest.mark.parametrize(
    "stage2_lora,fp8", [("merged", "off"), ("adapter", "storage"), ("merged-fp8", "compute")], ids=str
)
def test_merged_and_fp8_modes_take_them_too(lora_folder, image_path, tmp_path, stage2_lora, fp8):
    generator = pipelines.load_generator("tiny", loras=str(lora_folder), stage2_lora=stage2_lora, fp8=fp8, **FAST)
    base = digest(generator, image_path, tmp_path / "base.mp4", request())
    camera = digest(generator, image_path, tmp_path / "camera.mp4", request(LoraChoice("camera", 1.0)))
    assert camera != base
    assert digest(generator, image_path, tmp_path / "again.mp4", request()) == base
    stage2 = generator.runner.distilled_transformer
    if stage2 is not None:  # the merged copy: the user's adapter is on it too, and runs in stage 2
        adapter = generator.user_loras.loras["camera"].adapter
        seen = active_per_pass(generator, image_path, tmp_path / "c.mp4", request(LoraChoice("camera", 1.0)), stage2)
        assert set(seen) == {((adapter,), False)}
        assert_at_rest(stage2, [])
    if fp8 != "off":  # stored as the distilled LoRA's factors are
        from pipelines.fp8 import Fp8LoraFactor

        to_q = generator.pipe.transformer.transformer_blocks[0].attn1.to_q
        assert isinstance(to_q.lora_A[generator.user_loras.loras["camera"].adapter], Fp8LoraFactor)


def test_a_failed_or_cancelled_request_switches_its_loras_off(generator, image_path, tmp_path):
    base = digest(generator, image_path, tmp_path / "base.mp4", request())

    def cancel_in_stage_2(stage: str, step: int, total: int) -> None:
        if stage == "denoising" and step == total - 1:
            raise KeyboardInterrupt("cancelled")

    with pytest.raises(KeyboardInterrupt):
        generator.generate(request(LoraChoice("camera", 1.0)), image_path, tmp_path / "x.mp4", cancel_in_stage_2)
    assert_at_rest(generator.pipe.transformer, [DISTILLED_ADAPTER])
    assert digest(generator, image_path, tmp_path / "after.mp4", request()) == base


def test_requests_the_server_cannot_apply_are_refused_naming_loras(generator, image_path, tmp_path):
    out = tmp_path / "x.mp4"
    with pytest.raises(InvalidInputError, match=r"loras\[0\]\.name: no LoRA 'nope'; available: camera, style\.v2"):
        generator.generate(request(LoraChoice("nope", 1.0)), image_path, out, lambda *a: None)
    with pytest.raises(InvalidInputError, match=r"loras\[1\]\.name: 'camera' is listed twice"):
        generator.generate(request(LoraChoice("camera"), LoraChoice("camera")), image_path, out, lambda *a: None)
    with pytest.raises(InvalidInputError, match=r"loras: at most 4 per request; got 5"):
        generator.generate(request(*[LoraChoice("camera")] * 5), image_path, out, lambda *a: None)
    with pytest.raises(InvalidInputError, match=r"loras\[0\]\.scale: must be a finite number"):
        generator.generate(request(LoraChoice("camera", float("nan"))), image_path, out, lambda *a: None)
    assert not out.exists()


def test_a_server_without_loras_lists_none_and_refuses_them(image_path, tmp_path):
    plain = pipelines.load_generator("tiny", **FAST)
    assert plain.available_loras == () and "LoRAs" not in plain.description
    with pytest.raises(InvalidInputError, match="loras: this server has no LoRAs"):
        plain.generate(request(LoraChoice("camera")), image_path, tmp_path / "x.mp4", lambda *a: None)


def test_the_generator_lists_its_loras(generator):
    assert generator.available_loras == ("camera", "style.v2")
    assert "LoRAs: camera (rank 4), style.v2 (rank 2)" in generator.description


def test_every_accepted_key_layout_loads_the_same_adapter(tmp_path):
    lora = lightricks_lora(CAMERA_TARGETS, seed=21)
    layouts = {
        "lightricks": dict(lora),
        "diffusers": as_diffusers(lora),
        "peft": as_peft_down_up(lora),
        "bare": {key.removeprefix("diffusion_model."): value for key, value in lora.items()},
    }
    # Lightricks' files may carry alphas and text-connector factors: ignored, as ltx-pipelines ignores them.
    layouts["lightricks"]["diffusion_model.transformer_blocks.0.attn1.to_q.alpha"] = torch.tensor(1.0)
    layouts["lightricks"]["text_embedding_projection.aggregate_embed.lora_A.weight"] = torch.ones(2, 3)
    layouts["lightricks"]["text_embedding_projection.aggregate_embed.lora_B.weight"] = torch.ones(3, 2)
    for name, state in layouts.items():
        save_file(state, tmp_path / f"{name}.safetensors")
    generator = pipelines.load_generator("tiny", recipe="one-stage", loras=str(tmp_path), **FAST)
    to_q = generator.pipe.transformer.transformer_blocks[0].attn1.to_q
    factors = {
        name: (to_q.lora_A[loaded.adapter].weight, to_q.lora_B[loaded.adapter].weight)
        for name, loaded in generator.user_loras.loras.items()
    }
    expected = lora["diffusion_model.transformer_blocks.0.attn1.to_q.lora_A.weight"]
    for name, (a, b) in factors.items():
        assert torch.equal(a, expected), name
        assert torch.equal(b, factors["lightricks"][1]), name
        assert generator.user_loras.loras[name].matrices == len(lora) // 2
        assert to_q.scaling[generator.user_loras.loras[name].adapter] == 1.0  # strength * B @ A, no alpha


def write_bad(folder: Path, name: str, state: dict[str, torch.Tensor]) -> Path:
    folder.mkdir()
    save_file(state, folder / f"{name}.safetensors")
    return folder


@pytest.mark.parametrize(
    "state,reason",
    [
        (
            {
                "diffusion_model.transformer_blocks.0.attn1.to_q.lora_A.weight": torch.zeros(4, 7),
                "diffusion_model.transformer_blocks.0.attn1.to_q.lora_B.weight": torch.zeros(7, 4),
            },
            r"transformer_blocks\.0\.attn1\.to_q is \d+->\d+ here, but the LoRA's factors are A \(4, 7\)",
        ),
        (
            {
                "diffusion_model.transformer_blocks.9.attn1.to_q.lora_A.weight": torch.zeros(4, 8),
                "diffusion_model.transformer_blocks.9.attn1.to_q.lora_B.weight": torch.zeros(8, 4),
            },
            r"none of its 1 matrices is in this model's transformer",
        ),
        (
            {"transformer.transformer_blocks.0.attn1.to_q.weight": torch.zeros(8, 8)},
            r"\S+ is not a lora_A/lora_B weight",
        ),
        (
            {"transformer.transformer_blocks.0.attn1.to_q.lora_A.weight": torch.zeros(4, 8)},
            r"transformer_blocks\.0\.attn1\.to_q has only one of lora_A/lora_B",
        ),
    ],
    ids=["another-models-shapes", "no-matrix-of-this-model", "not-a-lora", "half-a-pair"],
)
def test_a_file_that_cannot_be_applied_is_a_start_up_error_naming_it(tmp_path, state, reason):
    folder = write_bad(tmp_path / "loras", "broken", state)
    with pytest.raises(LoraFolderError, match=rf"loras: broken\.safetensors: {reason}"):
        pipelines.load_generator("tiny", loras=str(folder), **FAST)


def test_matrices_the_model_does_not_have_are_left_out_as_ltx_pipelines_leaves_them(tmp_path, caplog):
    lora = lightricks_lora(CAMERA_TARGETS, seed=31)
    lora["diffusion_model.transformer_blocks.7.attn1.to_q.lora_A.weight"] = torch.zeros(4, 8)
    lora["diffusion_model.transformer_blocks.7.attn1.to_q.lora_B.weight"] = torch.zeros(8, 4)
    folder = write_bad(tmp_path / "loras", "extra", lora)
    generator = pipelines.load_generator("tiny", recipe="one-stage", loras=str(folder), **FAST)
    assert generator.user_loras.loras["extra"].matrices == len(lora) // 2 - 1
    assert "extra.safetensors: 1 matrices not in this model, left out: transformer_blocks.7.attn1.to_q" in caplog.text


def test_a_damaged_file_is_a_start_up_error_naming_it(tmp_path):
    folder = tmp_path / "loras"
    folder.mkdir()
    # A readable header (the folder listing reads only that) whose tensor data was cut off.
    header = json.dumps({"a.lora_A.weight": {"dtype": "F32", "shape": [4, 8], "data_offsets": [0, 128]}}).encode()
    (folder / "damaged.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\x00" * 16)
    with pytest.raises(LoraFolderError, match=r"loras: damaged\.safetensors: cannot read it as safetensors"):
        pipelines.load_generator("tiny", loras=str(folder), **FAST)


def test_a_generation_without_loras_refuses_the_folder_at_start_up(lora_folder):
    refusal = r"loras: tiny LTX-2\.5 \(test model\) does not take LoRAs; start it without --loras"
    with pytest.raises(ValueError, match=refusal):
        pipelines.load_generator("tiny-2.5", recipe="one-stage", loras=str(lora_folder), **FAST)


def test_ltx_2_3_takes_them_too(image_path, tmp_path):
    from pipelines.loader import build_tiny_bundle

    folder = tmp_path / "loras"
    folder.mkdir()
    transformer = build_tiny_bundle("tiny-2.3").pipe.transformer
    lora = random_lightricks_lora(transformer, targets=("attn2.to_q", "ff.net.2"), rank=2, seed=5, std_a=0.3, std_b=0.3)
    save_file(lora, folder / "look.safetensors")
    generator = pipelines.load_generator("tiny-2.3", loras=str(folder), **FAST)
    base = digest(generator, image_path, tmp_path / "base.mp4", request())
    assert digest(generator, image_path, tmp_path / "look.mp4", request(LoraChoice("look", 1.0))) != base
    assert digest(generator, image_path, tmp_path / "again.mp4", request()) == base
