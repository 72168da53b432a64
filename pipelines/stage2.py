"""The transformer that runs stage 2 (and both stages of the distilled recipe) when the distilled model is
the base model plus Lightricks' distilled LoRA.

- ``adapter`` (the default): the LoRA stays a peft adapter on the base transformer, switched on for those
  stages only. Its rank-384 side matmuls add ~9 % to stage 2's FLOPs, plus a scale-and-add per matrix.
- ``merged``: at load, a second transformer is built with each LoRA'd matrix replaced by
  W + scaling * B @ A, summed in float32 and rounded once to the weights' dtype, as Lightricks' own
  pipelines fuse their LoRAs at load. The base transformer loses its adapter and is never written again:
  nothing is fused or unfused per request, so the base's numbers cannot drift. For the distilled recipe
  (which never runs the base) the base itself is merged instead, and no copy is kept.
- ``merged-fp8``: as ``merged``, with the merged copy stored in fp8 (pipelines/fp8.py): half its memory,
  at fp8's rounding of stage 2's weights.
"""

from __future__ import annotations

import copy

import torch

STAGE2_LORA_MODES = ("adapter", "merged", "merged-fp8")


def check_stage2_lora(mode: str) -> str:
    if mode not in STAGE2_LORA_MODES:
        raise ValueError(f"stage2_lora: must be one of {', '.join(STAGE2_LORA_MODES)}; got {mode!r}")
    return mode


def merge_adapter_into(transformer: torch.nn.Module, adapter: str) -> list[str]:
    """Write W + scaling * B @ A into each of ``transformer``'s LoRA'd matrices and drop its peft layers;
    returns the names of the matrices that changed."""
    merged = []
    with torch.no_grad():
        for name, module in transformer.named_modules():
            lora_a = getattr(module, "lora_A", None)
            if lora_a is None or adapter not in lora_a:
                continue
            if adapter in getattr(module, "lora_variant", {}) or getattr(module, "fan_in_fan_out", False):
                raise ValueError(f"stage2_lora merged: {type(module).__name__} is not a plain LoRA layer")
            base = module.get_base_layer()
            delta = module.lora_B[adapter].weight.float() @ lora_a[adapter].weight.float()
            base.weight.copy_((base.weight.float() + delta * module.scaling[adapter]).to(base.weight.dtype))
            merged.append(name)
    transformer.unload_lora()  # type: ignore[operator]
    return merged


def merged_copy(transformer: torch.nn.Module, adapter: str) -> torch.nn.Module:
    """A second transformer with the adapter merged in; ``transformer`` itself is not changed."""
    copied = copy.deepcopy(transformer)
    merge_adapter_into(copied, adapter)
    return copied
