"""Where the model's weights live during generation: all on the GPU, or offloaded to CPU memory.

``plan_offload`` is pure arithmetic on byte counts (unit-tested without a GPU); ``apply_offload`` turns a
plan into diffusers/accelerate offloading on a loaded bundle. ``auto`` picks the fastest mode that fits
the free VRAM: everything resident (80 GB cards); everything but the text encoder, which visits the GPU
only to encode the prompt (when all of it does not quite fit); model offload, i.e. one component on the
GPU at a time (48 GB); or block-level group offload with VAE tiling (24 GB). A mode that cannot fit is refused at
start-up with the numbers, instead of failing mid-job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OFFLOAD_MODES = ("auto", "none", "text-encoder", "model", "group", "sequential")
GIB = 1024**3
# Activation memory a default-sized request (720x1280, 181 frames) needs on top of the weights that
# are on the GPU at that moment: published two-stage peaks (70.5 GB on an H100 with ~64 GB of bf16
# weights) put it near 7 GB; 8 GiB leaves a margin.
DEFAULT_ACTIVATION_HEADROOM = 8 * GIB
# Group offload keeps one transformer block at a time resident; below this nothing works.
MIN_GROUP_OFFLOAD_BYTES = 2 * GIB


class InsufficientGpuMemory(Exception):
    """The chosen offload mode cannot fit on this GPU: a start-up error, with the numbers."""


@dataclass(frozen=True)
class OffloadPlan:
    mode: str  # none | text-encoder | model | group | sequential
    vae_tiling: bool
    reason: str


def _gib(num_bytes: float) -> str:
    return f"{num_bytes / GIB:.1f} GiB"


def plan_offload(
    requested: str,
    *,
    on_cuda: bool,
    free_bytes: int,
    component_bytes: dict[str, int],
    headroom_bytes: int = DEFAULT_ACTIVATION_HEADROOM,
) -> OffloadPlan:
    if requested not in OFFLOAD_MODES:
        raise ValueError(f"offload: must be one of {', '.join(OFFLOAD_MODES)}; got {requested!r}")
    if not on_cuda:
        if requested == "auto":
            return OffloadPlan("none", vae_tiling=False, reason="no CUDA device: the weights are used where they are")
        return OffloadPlan(requested, vae_tiling=False, reason=f"--offload {requested}, with the CPU on both ends")
    needs = _bytes_needed(component_bytes, headroom_bytes)
    free = f"{_gib(free_bytes)} free"
    if requested == "auto":
        for mode in ("none", "text-encoder", "model"):
            if free_bytes >= needs[mode]:
                return OffloadPlan(mode, vae_tiling=False, reason=f"{_WHY[mode]}: needs ~{_gib(needs[mode])}, {free}")
        requested = "group"
        requested_reason = f"{_WHY['group']}: one component at a time would need ~{_gib(needs['model'])}, {free}"
    else:
        requested_reason = f"--offload {requested}"
    if free_bytes < needs[requested]:
        hint = {"none": "--offload text-encoder, model or group", "text-encoder": "--offload model or group"}.get(
            requested, "--offload group or --fp8"
        )
        if requested in ("group", "sequential"):
            hint = "a larger GPU"
        raise InsufficientGpuMemory(
            f"--offload {requested} needs ~{_gib(needs[requested])} of GPU memory but only {free}; use {hint}"
        )
    tiling = requested in ("group", "sequential")
    return OffloadPlan(requested, vae_tiling=tiling, reason=requested_reason)


_WHY = {
    "none": "everything resident",
    "text-encoder": "everything resident but the text encoder, which visits the GPU for each prompt",
    "model": "model offload (one component on the GPU at a time)",
    "group": "group offload + VAE tiling",
}


def _bytes_needed(component_bytes: dict[str, int], headroom: int) -> dict[str, int]:
    """Peak GPU bytes of each mode: the weights resident at the worst moment plus activations."""
    total = sum(component_bytes.values())
    text_encoder = component_bytes.get("text_encoder", 0)
    # The prompt encode needs little besides the text encoder's own weights; the rest needs headroom.
    text_encoder_peak = max(text_encoder + MIN_GROUP_OFFLOAD_BYTES, headroom)
    largest = max(component_bytes.values())
    group = MIN_GROUP_OFFLOAD_BYTES + headroom // 4
    return {
        "none": total + headroom,
        "text-encoder": total - text_encoder + text_encoder_peak,
        "model": largest + headroom,
        "group": group,
        "sequential": group,
    }


def module_bytes(module, device_type: str | None = None) -> int:
    """Bytes of a module's parameters and buffers (only those on ``device_type``, when given)."""
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors if device_type is None or t.device.type == device_type)


def _place_upsampler(bundle, device) -> None:
    # 0.5B params: cheaper to keep resident than to move for every request. LTX-2.5 has none.
    if bundle.latent_upsampler is not None:
        bundle.latent_upsampler.to(device)


def apply_offload(bundle, plan: OffloadPlan, device) -> None:
    """Place the bundle's weights as the plan says. Runs once, at load."""
    import torch

    pipe = bundle.pipe
    device = torch.device(device)
    if plan.mode == "none":
        pipe.to(device)
        _place_upsampler(bundle, device)
    elif plan.mode == "text-encoder":
        from accelerate import cpu_offload_with_hook

        for name in ("transformer", "connectors", "vae", "audio_vae", "vocoder"):
            getattr(pipe, name).to(device)
        _place_upsampler(bundle, device)
        # Moves to the GPU when the prompt is encoded; the generator sends it back right after.
        _, hook = cpu_offload_with_hook(pipe.text_encoder, execution_device=device)
        bundle.after_prompt = hook.offload
    elif plan.mode == "model":
        pipe.enable_model_cpu_offload(device=device)
        _place_upsampler(bundle, device)
    elif plan.mode in ("group", "sequential"):
        # "sequential" is leaf-level group offloading: the same memory as accelerate's sequential CPU
        # offload (one layer on the GPU at a time) but with transfers overlapped on a CUDA stream; and
        # accelerate's own sequential hooks break Gemma-3's scaled embedding under transformers 5.
        level: dict[str, dict[str, Any]] = {
            "group": dict(offload_type="block_level", num_blocks_per_group=1),
            "sequential": dict(offload_type="leaf_level"),
        }
        pipe.enable_group_offload(
            onload_device=device,
            offload_device=torch.device("cpu"),
            use_stream=device.type == "cuda",
            **level[plan.mode],
        )
        _place_upsampler(bundle, device)
    else:
        raise ValueError(f"unknown offload mode {plan.mode!r}")
    if plan.vae_tiling:
        pipe.vae.enable_tiling()
