"""Offload planning is arithmetic on byte counts: checked here for the real model's sizes, no GPU needed.

What each mode needs is the weights on the GPU at its worst moment plus the activations of the largest
request it is planned for, computed from that request's token counts (pipelines/offload.py)."""

from __future__ import annotations

import pytest

from pipelines.ltx2_19b import TRANSFORMER_CONFIG
from pipelines.offload import (
    GIB,
    TEXT_ENCODE_BYTES,
    WORKSPACE_BYTES,
    InsufficientGpuMemory,
    RequestSize,
    activation_budget,
    bytes_needed,
    plan_offload,
)

# bf16 component sizes of LTX-2 19B (../shared/ltx2-notes.md), in bytes; the transformer carries the
# stage-2 LoRA (rank 384 on every attention and feed-forward matrix: 3.7B parameters, 6.9 GiB).
LTX2_19B_BYTES = {
    "transformer": int((35.2 + 6.9) * GIB),
    "text_encoder": int(22.7 * GIB),
    "connectors": int(2.7 * GIB),
    "vae": int(2.3 * GIB),
    "audio_vae": int(0.1 * GIB),
    "vocoder": int(0.1 * GIB),
    "latent_upsampler": int(0.9 * GIB),
}
# The same with the LoRA merged into a second, resident bf16 transformer (stage2_lora="merged").
MERGED_BYTES = dict(LTX2_19B_BYTES, transformer=int(35.2 * GIB), stage2_transformer=int(35.2 * GIB))
CONFIG = dict(TRANSFORMER_CONFIG)
# The API's default request, two-stage with the LoRA as an adapter (the defaults).
DEFAULT = activation_budget(CONFIG)


def plan(requested: str, free_gib: float, sizes=LTX2_19B_BYTES, activations=DEFAULT):
    return plan_offload(
        requested, on_cuda=True, free_bytes=int(free_gib * GIB), component_bytes=sizes, activations=activations
    )


def test_the_default_request_is_budgeted_from_its_token_counts():
    # 720x1280x181 is generated at 768x1280x185 by two-stage: 24 x 40 latent pixels x 24 latent frames in
    # stage 2, and 193 audio tokens (185 frames / 24 fps x 25 per second).
    assert "768x1280x185 generated" in DEFAULT.detail and "23,040 video tokens" in DEFAULT.detail
    # 42 + 4 (LoRA temporaries) bf16 values of the 4096 width per video token, 2048 per audio token.
    assert DEFAULT.denoise_bytes == 46 * 2 * (23_040 * 4096 + 193 * 2048)
    # The decode: 2.5 values per output pixel per frame for the whole clip, 44 per frame of the largest
    # window (48 frames + 26 of context on each side).
    assert DEFAULT.decode_bytes == int((2.5 * 185 + 44 * 100) * 2 * 768 * 1280)
    # They never overlap: the larger one plus the workspace.
    assert DEFAULT.total == max(DEFAULT.denoise_bytes, DEFAULT.decode_bytes) + WORKSPACE_BYTES
    assert 9.5 * GIB < DEFAULT.total < 10.5 * GIB


def test_the_budget_follows_the_recipe_the_lora_mode_and_the_request():
    merged = activation_budget(CONFIG, lora_adapter=False)
    assert merged.denoise_bytes == 42 * 2 * (23_040 * 4096 + 193 * 2048)  # no LoRA temporaries
    # One-stage runs every step at full resolution, in multiples of 32 (736 px), and never the LoRA.
    one_stage = activation_budget(CONFIG, recipe="one-stage")
    assert "22,080 video tokens" in one_stage.detail and "LoRA" not in one_stage.detail
    fp8 = activation_budget(CONFIG, fp8_compute=True)
    assert fp8.denoise_bytes - DEFAULT.denoise_bytes == 4 * (23_040 * 4096 + 193 * 2048)
    one_pass_decode = activation_budget(CONFIG, decode_chunk_frames=None)
    assert one_pass_decode.decode_bytes > 1.7 * DEFAULT.decode_bytes
    large = activation_budget(CONFIG, RequestSize(1280, 1280, 241))
    assert "49,600 video tokens" in large.detail and large.denoise_bytes > large.decode_bytes
    assert large.total > 1.8 * DEFAULT.total


@pytest.mark.parametrize(
    ("free_gib", "mode", "tiling"),
    [
        (139.0, "none", False),  # H200
        (81.0, "none", False),
        (79.0, "text-encoder", False),  # H100 80GB: 70.9 GiB of weights + ~9.9 GiB of activations is too much
        (60.0, "model", False),
        (47.0, "group", True),
        (23.0, "group", True),
    ],
)
def test_auto_picks_by_free_vram(free_gib, mode, tiling):
    chosen = plan("auto", free_gib)
    assert (chosen.mode, chosen.vae_tiling) == (mode, tiling)
    assert "GiB" in chosen.reason and "23,040 video tokens" in chosen.reason  # the log says why, with the numbers


def test_resident_mode_on_a_too_small_gpu_is_a_start_up_error_naming_the_alternatives():
    with pytest.raises(
        InsufficientGpuMemory,
        match=r"--offload none needs ~80\.8 GiB .* 79\.0 GiB free; use --offload text-encoder.*activations ~9\.9 GiB",
    ):
        plan("none", 79.0)


def test_text_encoder_mode_needs_the_rest_resident_plus_the_larger_of_the_encode_and_the_activations():
    needs = bytes_needed(LTX2_19B_BYTES, DEFAULT.total)
    rest = sum(LTX2_19B_BYTES.values()) - LTX2_19B_BYTES["text_encoder"]
    # Gemma's visit (22.7 GiB + its encode) is the larger moment: the activations come after it has left.
    assert needs["text-encoder"] == rest + LTX2_19B_BYTES["text_encoder"] + TEXT_ENCODE_BYTES
    with pytest.raises(InsufficientGpuMemory, match="--offload text-encoder needs ~72.9 GiB"):
        plan("text-encoder", 70.0)
    assert plan("text-encoder", 73.0).mode == "text-encoder"


def test_model_offload_keeps_the_small_components_and_lets_the_big_ones_take_turns():
    needs = bytes_needed(LTX2_19B_BYTES, DEFAULT.total)
    staying = 6.1 * GIB  # connectors, VAEs, vocoder, upsampler
    assert needs["model"] == pytest.approx(staying + LTX2_19B_BYTES["transformer"] + DEFAULT.total, abs=GIB / 100)
    with pytest.raises(InsufficientGpuMemory, match="--offload model needs ~58.1 GiB"):
        plan("model", 55.0)
    assert plan("model", 59.0).mode == "model"


def test_a_merged_stage_2_transformer_is_resident_or_takes_its_own_turn():
    merged = activation_budget(CONFIG, lora_adapter=False)
    needs = bytes_needed(MERGED_BYTES, merged.total)
    assert needs["none"] == sum(MERGED_BYTES.values()) + merged.total  # 99.1 GiB of weights: an H200
    # Under model offload the base and the merged copy take turns: the larger one at a time.
    assert needs["model"] == pytest.approx(6.1 * GIB + 35.2 * GIB + merged.total, abs=GIB / 100)
    assert plan("auto", 139.0, MERGED_BYTES, merged).mode == "none"
    assert plan("auto", 79.0, MERGED_BYTES, merged).mode == "model"


def test_group_and_sequential_offload_use_vae_tiling():
    assert plan("group", 23.0).vae_tiling and plan("sequential", 11.0).vae_tiling


def test_without_cuda_auto_keeps_weights_where_they_are_and_explicit_modes_are_honoured():
    on_cpu = plan_offload("auto", on_cuda=False, free_bytes=0, component_bytes=LTX2_19B_BYTES)
    assert on_cpu.mode == "none" and "no CUDA" in on_cpu.reason
    assert plan_offload("group", on_cuda=False, free_bytes=0, component_bytes=LTX2_19B_BYTES).mode == "group"


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="offload: must be one of auto, none, text-encoder, model, group, sequential"):
        plan("disk", 80.0)
