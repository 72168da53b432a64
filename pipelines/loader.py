"""Loads LTX-2 once per worker: from a weights folder (LTX-2 19B, or a tiny model saved in the same
layout), or the tiny model built in code. Every path ends in the same LTX2Bundle, so the tests exercise
the loader that production uses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from .offload import GIB, OffloadPlan, apply_offload, module_bytes, plan_offload
from .weights import DISTILLED_LORA_FILE, LATENT_UPSAMPLER_DIR, WeightsIncomplete, check_weights

log = logging.getLogger("ltx2.loader")

DISTILLED_ADAPTER = "stage2_distilled"
DTYPES = {"auto": None, "bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass
class LTX2Bundle:
    pipe: object  # LTX2ImageToVideoPipeline
    latent_upsampler: object | None  # LTX2LatentUpsamplerModel
    distilled_adapter: str | None  # peft adapter name of the stage-2 distilled LoRA (disabled between uses)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} was asked for but CUDA is not available (torch {torch.__version__})")
    return resolved


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name not in DTYPES:
        raise ValueError(f"dtype: must be one of {', '.join(DTYPES)}; got {name!r}")
    # bf16 is LTX-2's native precision on GPUs; CPUs run float32 far faster than emulated bf16.
    return DTYPES[name] or (torch.bfloat16 if device.type == "cuda" else torch.float32)


def load_bundle_from_weights(weights_dir: str | Path, dtype: torch.dtype) -> LTX2Bundle:
    from diffusers import LTX2ImageToVideoPipeline
    from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel

    weights_dir = Path(weights_dir)
    problems = check_weights(weights_dir)
    if problems:
        raise WeightsIncomplete(problems)
    pipe = LTX2ImageToVideoPipeline.from_pretrained(weights_dir, torch_dtype=dtype, local_files_only=True)
    upsampler = LTX2LatentUpsamplerModel.from_pretrained(
        weights_dir / LATENT_UPSAMPLER_DIR, torch_dtype=dtype, local_files_only=True
    ).eval()
    pipe.load_lora_weights(str(weights_dir), weight_name=DISTILLED_LORA_FILE, adapter_name=DISTILLED_ADAPTER)
    return _finish_bundle(pipe, upsampler)


def build_tiny_bundle() -> LTX2Bundle:
    from .tiny import build_tiny_distilled_lora, build_tiny_latent_upsampler, build_tiny_pipeline

    pipe = build_tiny_pipeline()
    pipe.load_lora_weights(build_tiny_distilled_lora(pipe.transformer), adapter_name=DISTILLED_ADAPTER)
    return _finish_bundle(pipe, build_tiny_latent_upsampler())


def _finish_bundle(pipe, upsampler) -> LTX2Bundle:
    pipe.disable_lora()  # on only for the stages that use it
    pipe.set_progress_bar_config(disable=True)
    return LTX2Bundle(pipe=pipe, latent_upsampler=upsampler, distilled_adapter=DISTILLED_ADAPTER)


def store_transformer_in_fp8(bundle: LTX2Bundle, compute_dtype: torch.dtype) -> None:
    """Keep the transformer's weights in float8 (e4m3) and upcast each layer as it runs: half the memory
    of bf16 for the largest component, at a small quality and speed cost."""
    bundle.pipe.transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=compute_dtype)


_PIPE_COMPONENTS = ("transformer", "text_encoder", "connectors", "vae", "audio_vae", "vocoder")


def _bundle_modules(bundle: LTX2Bundle) -> dict[str, torch.nn.Module]:
    modules = {name: getattr(bundle.pipe, name) for name in _PIPE_COMPONENTS}
    if bundle.latent_upsampler is not None:
        modules["latent_upsampler"] = bundle.latent_upsampler
    return modules


def component_bytes(bundle: LTX2Bundle) -> dict[str, int]:
    return {name: module_bytes(module) for name, module in _bundle_modules(bundle).items()}


def free_gpu_bytes(device: torch.device) -> int:
    if device.type != "cuda":
        return 0
    free, _total = torch.cuda.mem_get_info(device)
    return free


def bytes_on_device(bundle: LTX2Bundle, device: torch.device) -> int:
    if device.type != "cuda":
        return 0
    return sum(module_bytes(module, device_type="cuda") for module in _bundle_modules(bundle).values())


def place_bundle(bundle: LTX2Bundle, offload: str, device: torch.device) -> OffloadPlan:
    """Choose the offload mode (``auto`` from free VRAM) and apply it; raises InsufficientGpuMemory."""
    sizes = component_bytes(bundle)
    # Weights already on the GPU (a bundle built there, like scripts/bench_gpu.py's random 19B) are part of
    # what the plan places, not a cost on top of it: count their memory as free.
    free = free_gpu_bytes(device) + bytes_on_device(bundle, device)
    plan = plan_offload(offload, on_cuda=device.type == "cuda", free_bytes=free, component_bytes=sizes)
    log.info("offload %s (%s); weights %.1f GiB in all", plan.mode, plan.reason, sum(sizes.values()) / GIB)
    apply_offload(bundle, plan, device)
    return plan
