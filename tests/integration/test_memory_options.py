"""The memory options of pipelines.load_generator on the CPU: offloading moves weights and never changes
arithmetic (text-encoder and model offload give the same bytes as none, a merged stage-2 transformer
included); offloaded weights wait in host memory and leave the GPU without being copied back; Lightricks'
fp8 checkpoint keeps its own fp8 values and activation scales under ``fp8="compute"``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from PIL import Image

import pipelines
from pipelines.interface import JobSpec
from pipelines.offload import HostCopy, take_turns
from pipelines.tiny import save_tiny_weights
from tests.integration.test_weights_loader import write_checkpoint

FAST = dict(num_inference_steps=2, x264_preset="ultrafast", x264_crf=36, device="cpu")
REQUEST = JobSpec(
    prompt="a lighthouse at dusk",
    negative_prompt="blurry",
    width=128,
    height=96,
    num_frames=9,
    fps=12,
    seed=7,
    guidance_scale=4.0,
)


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "in.png"
    Image.radial_gradient("L").convert("RGB").resize((200, 300)).save(path)
    return path


def video_digest(generator, picture: Path, out: Path) -> str:
    generator.generate(REQUEST, picture, out, lambda *args: None)
    return hashlib.sha256(out.read_bytes()).hexdigest()


@pytest.mark.parametrize("stage2_lora", ["adapter", "merged"])
@pytest.mark.parametrize("offload", ["text-encoder", "model"])
def test_offload_gives_the_same_bytes_as_no_offload(picture, tmp_path, offload, stage2_lora):
    resident = pipelines.load_generator("tiny", offload="none", stage2_lora=stage2_lora, **FAST)
    offloaded = pipelines.load_generator("tiny", offload=offload, stage2_lora=stage2_lora, **FAST)
    assert f"offload {offload}" in offloaded.description
    assert video_digest(offloaded, picture, tmp_path / "a.mp4") == video_digest(resident, picture, tmp_path / "b.mp4")


def test_fp8_true_still_means_storage_and_the_description_names_each_option():
    storage = pipelines.load_generator("tiny", fp8=True, **FAST)
    assert "transformer stored in fp8;" in storage.description
    both = pipelines.load_generator("tiny", fp8="compute", stage2_lora="merged", **FAST)
    assert "stage-2 LoRA merged at load, transformer stored in fp8, fp8 matmuls" in both.description
    to_q = both.runner.distilled_transformer.transformer_blocks[0].attn1.to_q  # the merged copy: fp8 too
    assert to_q.compute and to_q.weight_fp8.dtype == torch.float8_e4m3fn
    copy_only = pipelines.load_generator("tiny", stage2_lora="merged-fp8", **FAST)
    assert "merged stage-2 transformer stored in fp8" in copy_only.description
    assert copy_only.pipe.transformer.transformer_blocks[0].attn1.to_q.weight.dtype == torch.float32


def test_one_stage_has_no_stage_2_to_merge():
    generator = pipelines.load_generator("tiny", recipe="one-stage", stage2_lora="merged", **FAST)
    assert "merged" not in generator.description and generator.runner.distilled_transformer is None


def test_bad_option_values_are_refused_before_anything_loads():
    with pytest.raises(ValueError, match="stage2_lora: must be one of adapter, merged, merged-fp8"):
        pipelines.load_generator("tiny", stage2_lora="fused", **FAST)
    with pytest.raises(ValueError, match="fp8: must be one of off, storage, compute"):
        pipelines.load_generator("tiny", fp8="e5m2", **FAST)


def _storages(module) -> list[int]:
    return [t.untyped_storage().data_ptr() for t in [*module.parameters(), *module.buffers()]]


def test_offloaded_weights_leave_the_device_by_dropping_their_copy_never_by_copying_back():
    # "meta" stands in for the GPU: a tensor moved there has no data, so one that comes back with data
    # can only be the host copy it left behind.
    encoder, transformer = torch.nn.Linear(8, 8), torch.nn.Linear(8, 4)
    host_storages = _storages(encoder)
    copies = [HostCopy(encoder, "meta"), HostCopy(transformer, "meta")]
    take_turns(copies)
    assert _storages(encoder) == host_storages  # nothing moved at load (no pinning without CUDA)

    encoder(torch.empty(2, 8, device="meta"))  # its turn: it arrives, the other waits on the host
    assert encoder.weight.is_meta and not transformer.weight.is_meta
    transformer(torch.empty(2, 8, device="meta"))  # its turn: the encoder leaves
    assert transformer.weight.is_meta and not encoder.weight.is_meta
    assert _storages(encoder) == host_storages  # the very same host tensors, not a copy back


def test_text_encoder_offload_sends_the_encoder_away_right_after_the_prompt(picture, tmp_path):
    generator = pipelines.load_generator("tiny", offload="text-encoder", **FAST)
    encoder = generator.pipe.text_encoder
    assert any(hook for hook in encoder._forward_pre_hooks.values())  # it arrives when called...
    assert generator.after_prompt is not None  # ...and leaves once the prompt is encoded
    video_digest(generator, picture, tmp_path / "out.mp4")


@pytest.fixture(scope="module")
def fp8_weights(tmp_path_factory) -> Path:
    """The tiny LTX-2 on disk with its transformer as Lightricks' fp8 checkpoint, input scales included."""
    from diffusers import LTX2VideoTransformer3DModel
    from safetensors import safe_open
    from safetensors.torch import save_file

    from pipelines.weights import FP8_CHECKPOINT_FILE

    folder = tmp_path_factory.mktemp("fp8-weights")
    save_tiny_weights(folder)
    transformer = LTX2VideoTransformer3DModel.from_pretrained(folder / "transformer")
    for shard in (folder / "transformer").glob("*.safetensors"):
        shard.unlink()
    checkpoint = folder / FP8_CHECKPOINT_FILE
    write_checkpoint(transformer, checkpoint, fp8=True)
    with safe_open(str(checkpoint), framework="pt") as handle:
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    for name in [n for n, t in tensors.items() if t.dtype == torch.float8_e4m3fn]:
        tensors[name.removesuffix(".weight") + ".input_scale"] = torch.tensor(0.0123)
    save_file(tensors, str(checkpoint))
    return folder


def test_fp8_compute_keeps_the_checkpoints_fp8_values_and_input_scales(fp8_weights, picture, tmp_path):
    from safetensors import safe_open

    from pipelines.weights import FP8_CHECKPOINT_FILE

    generator = pipelines.load_generator("ltx-2-19b", weights=str(fp8_weights), fp8="compute", **FAST)
    assert "transformer stored in fp8, fp8 matmuls" in generator.description
    to_q = generator.pipe.transformer.transformer_blocks[0].attn1.to_q.base_layer
    with safe_open(str(fp8_weights / FP8_CHECKPOINT_FILE), framework="pt") as handle:
        name = "model.diffusion_model.transformer_blocks.0.attn1.to_q"
        stored, scale = handle.get_tensor(f"{name}.weight"), handle.get_tensor(f"{name}.weight_scale")
    assert torch.equal(to_q.weight_fp8.view(torch.uint8), stored.view(torch.uint8))
    assert torch.equal(to_q.weight_scale, scale.float().expand(to_q.out_features))
    assert to_q.input_scale == pytest.approx(0.0123)
    # The LoRA is not in the checkpoint: its matrices get scales of their own and dynamic activation scales.
    lora_a = generator.pipe.transformer.transformer_blocks[0].attn1.to_q.lora_A["stage2_distilled"]
    assert lora_a.input_scale is None and lora_a.compute
    video_digest(generator, picture, tmp_path / "fp8.mp4")


# ---- the offload planner's activation figures, against what the model code really allocates --------------------


def _transformer_peak(transformer, frames: int, dtype=torch.bfloat16) -> int:
    """Peak live bytes of one forward of ``transformer`` on 16x16 latent pixels x ``frames`` (1,024 text tokens)."""
    from tests.support.live_bytes import LiveBytes

    video, audio = frames * 16 * 16, 40
    inputs = dict(
        hidden_states=torch.randn(1, video, 128, dtype=dtype),
        audio_hidden_states=torch.randn(1, audio, 128, dtype=dtype),
        encoder_hidden_states=torch.randn(1, 1024, 3840, dtype=dtype),
        audio_encoder_hidden_states=torch.randn(1, 1024, 3840, dtype=dtype),
        timestep=torch.full((1, video), 500.0),
        audio_timestep=torch.full((1, audio), 500.0),
        sigma=torch.full((1,), 500.0),
        audio_sigma=torch.full((1,), 500.0),
    )
    tracker = LiveBytes(*transformer.parameters(), *transformer.buffers(), *inputs.values())
    with torch.inference_mode(), tracker:
        transformer(
            **inputs, num_frames=frames, height=16, width=16, fps=24.0, audio_num_frames=audio, return_dict=False
        )
    return tracker.peak


@pytest.mark.parametrize("variant", ["plain", "lora-adapter", "fp8-compute"])
def test_the_planners_bytes_per_video_token_are_what_the_transformer_allocates(variant):
    """One block of LTX-2 19B's architecture, at a quarter of its width (the figure scales with the width:
    82 bytes per token per unit of width at the full 4,096 too), bf16; the growth from 512 to 1,024 video
    tokens is what each token costs."""
    from diffusers import LTX2VideoTransformer3DModel
    from peft import LoraConfig, inject_adapter_in_model

    from pipelines.fp8 import store_blocks_in_fp8
    from pipelines.ltx2_19b import DISTILLED_LORA_TARGETS, TRANSFORMER_CONFIG
    from pipelines.offload import (
        FP8_COMPUTE_BYTES_PER_TOKEN_WIDTH,
        LORA_ADAPTER_VALUES_PER_TOKEN_WIDTH,
        TRANSFORMER_VALUES_PER_TOKEN_WIDTH,
    )

    narrow = dict(num_attention_heads=8, audio_num_attention_heads=8, cross_attention_dim=1024)
    config = dict(TRANSFORMER_CONFIG, num_layers=1, audio_cross_attention_dim=512, **narrow)
    torch.manual_seed(0)
    transformer = LTX2VideoTransformer3DModel(**config).to(torch.bfloat16).eval()
    planned = 2 * TRANSFORMER_VALUES_PER_TOKEN_WIDTH
    if variant == "lora-adapter":
        lora = LoraConfig(r=64, lora_alpha=64, target_modules=list(DISTILLED_LORA_TARGETS))
        inject_adapter_in_model(lora, transformer, adapter_name="stage2")
        transformer.to(torch.bfloat16)
        planned += 2 * LORA_ADAPTER_VALUES_PER_TOKEN_WIDTH
    if variant == "fp8-compute":
        store_blocks_in_fp8(transformer, torch.bfloat16, mode="compute")
        planned += FP8_COMPUTE_BYTES_PER_TOKEN_WIDTH
    width = 8 * 128
    measured = (_transformer_peak(transformer, 4) - _transformer_peak(transformer, 2)) / (512 * width)
    assert measured <= planned <= 1.1 * measured, (measured, planned)


def test_the_planners_decode_bytes_bound_what_the_chunked_decode_allocates():
    """LTX-2's video VAE (full channel widths, bf16) decoding 185 frames in 48-frame chunks at 64x64: the
    planner's figure per output pixel is within 5 % above what the decode holds at its peak."""
    from diffusers import AutoencoderKLLTX2Video

    from pipelines.decode import decode_video_chunks
    from pipelines.ltx2_19b import TRANSFORMER_CONFIG, VIDEO_VAE_CONFIG
    from pipelines.offload import RequestSize, activation_budget
    from tests.support.live_bytes import LiveBytes

    torch.manual_seed(0)
    vae = AutoencoderKLLTX2Video(**VIDEO_VAE_CONFIG).to(torch.bfloat16).eval()
    latents = torch.randn(1, 128, 24, 2, 2, dtype=torch.bfloat16)
    tracker = LiveBytes(*vae.parameters(), *vae.buffers(), latents)
    with torch.inference_mode(), tracker:
        for _chunk in decode_video_chunks(vae, latents, num_frames=185, chunk_frames=48):
            pass
    planned = activation_budget(dict(TRANSFORMER_CONFIG), RequestSize(64, 64, 185), recipe="one-stage").decode_bytes
    assert tracker.peak <= planned <= 1.05 * tracker.peak, (tracker.peak, planned)
