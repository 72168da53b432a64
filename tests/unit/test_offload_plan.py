"""Offload planning is arithmetic on byte counts: checked here for the real model's sizes, no GPU needed."""

from __future__ import annotations

import pytest

from pipelines.offload import GIB, InsufficientGpuMemory, plan_offload

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


def plan(requested: str, free_gib: float):
    return plan_offload(requested, on_cuda=True, free_bytes=int(free_gib * GIB), component_bytes=LTX2_19B_BYTES)


@pytest.mark.parametrize(
    ("free_gib", "mode", "tiling"),
    [
        (139.0, "none", False),
        (79.5, "none", False),
        (75.0, "text-encoder", False),
        (60.0, "model", False),
        (47.0, "group", True),
        (23.0, "group", True),
    ],
)
def test_auto_picks_by_free_vram(free_gib, mode, tiling):
    chosen = plan("auto", free_gib)
    assert (chosen.mode, chosen.vae_tiling) == (mode, tiling)
    assert "GiB" in chosen.reason  # the start-up log says why, with the numbers


def test_resident_mode_on_a_too_small_gpu_is_a_start_up_error_naming_the_alternatives():
    with pytest.raises(
        InsufficientGpuMemory, match=r"--offload none needs ~78\.9 GiB .* 47\.0 GiB free; use --offload text-encoder"
    ):
        plan("none", 47.0)


def test_model_offload_needs_room_for_the_largest_component():
    with pytest.raises(InsufficientGpuMemory, match="--offload model needs ~50.1 GiB"):
        plan("model", 47.0)
    assert plan("model", 51.0).mode == "model"


def test_text_encoder_mode_needs_the_rest_resident_plus_the_text_encoder_while_it_runs():
    # 48.2 GiB of weights stay; the 22.7 GiB text encoder (+2 GiB) visits: 72.9 GiB at that moment.
    with pytest.raises(InsufficientGpuMemory, match="--offload text-encoder needs ~72.9 GiB"):
        plan("text-encoder", 70.0)
    chosen = plan("text-encoder", 73.0)
    assert chosen.mode == "text-encoder" and not chosen.vae_tiling


def test_group_and_sequential_offload_use_vae_tiling():
    assert plan("group", 23.0).vae_tiling and plan("sequential", 11.0).vae_tiling


def test_without_cuda_auto_keeps_weights_where_they_are_and_explicit_modes_are_honoured():
    on_cpu = plan_offload("auto", on_cuda=False, free_bytes=0, component_bytes=LTX2_19B_BYTES)
    assert on_cpu.mode == "none" and "no CUDA" in on_cpu.reason
    assert plan_offload("group", on_cuda=False, free_bytes=0, component_bytes=LTX2_19B_BYTES).mode == "group"


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="offload: must be one of auto, none, text-encoder, model, group, sequential"):
        plan("disk", 80.0)
