"""Tiny random LoRA files for servers under test: Lightricks' key format, shaped for the tiny model's transformer
(so a server running ``--model tiny`` really applies them)."""

from __future__ import annotations

from pathlib import Path

TINY_LORA_TARGETS = ("attn1.to_q", "attn2.to_k", "ff.net.2")


def write_tiny_lora_file(path: Path, seed: int = 0, rank: int = 4) -> Path:
    import torch
    from safetensors.torch import save_file

    from pipelines.tiny import _build_transformer, random_lightricks_lora

    torch.manual_seed(0)
    transformer = _build_transformer()
    lora = random_lightricks_lora(transformer, targets=TINY_LORA_TARGETS, rank=rank, seed=seed, std_a=0.3, std_b=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({key: value.contiguous() for key, value in lora.items()}, str(path))
    return path
