"""Float8 storage of the transformer's matrices, with a scale per matrix.

Each ``nn.Linear`` inside the transformer blocks (nearly all of its 19B parameters) becomes a
``ScaledFp8Linear``: the weight is kept as float8_e4m3fn values ``q`` with one float32 scale ``s``
(``W ~= q * s``, s = max|W| / 448, e4m3's largest value), and each forward upcasts it to the compute
dtype for that matmul only. Half the memory of bf16. The scale matters: LTX-2's weights are mostly far
below e4m3's smallest normal value (2^-6), where a plain cast (diffusers' layerwise casting) keeps only
one or two significant bits; scaled, every weight keeps e4m3's full 3-bit mantissa. Lightricks' own fp8
checkpoints store weights the same way, so theirs load without a second rounding.
Embeddings, norms and the input/output projections stay in the compute dtype, as they are small and
sensitive. The stage-2 LoRA's matrices are stored the same way: its update is a small correction to W,
so e4m3's relative error on it is a far smaller error on the result.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

E4M3_MAX = 448.0


class ScaledFp8Linear(torch.nn.Module):
    def __init__(self, linear: torch.nn.Linear, compute_dtype: torch.dtype) -> None:
        super().__init__()
        weight = linear.weight.detach()
        scale = (weight.abs().amax().float() / E4M3_MAX).clamp(min=torch.finfo(torch.float32).tiny)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.compute_dtype = compute_dtype
        self.register_buffer("weight_fp8", (weight.float() / scale).to(torch.float8_e4m3fn))
        self.register_buffer("weight_scale", scale)
        self.bias = None if linear.bias is None else torch.nn.Parameter(linear.bias.detach().to(compute_dtype))

    weight_fp8: torch.Tensor
    weight_scale: torch.Tensor

    @property
    def weight(self) -> torch.Tensor:
        """The dequantised weight (code that inspects ``.weight``, e.g. its dtype or device, keeps working)."""
        return self.weight_fp8.to(self.compute_dtype) * self.weight_scale.to(self.compute_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight_fp8.to(x.dtype) * self.weight_scale.to(x.dtype)
        return F.linear(x, weight, None if self.bias is None else self.bias.to(x.dtype))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, storage=float8_e4m3fn"


def store_blocks_in_fp8(transformer: torch.nn.Module, compute_dtype: torch.dtype) -> int:
    """Swap every nn.Linear under ``transformer_blocks`` for a ScaledFp8Linear; returns how many.

    That includes the stage-2 LoRA's A and B matrices (rank 384 on every block matrix: 3.7B parameters,
    6.9 GiB in bf16), which peft keeps as nn.Linear in per-adapter ModuleDicts; their wrapped base layers
    are swapped the same way.
    """
    swapped = 0
    blocks: torch.nn.Module = transformer.transformer_blocks  # type: ignore[assignment]
    for parent in list(blocks.modules()):
        for child_name, child in list(parent.named_children()):
            if type(child) is torch.nn.Linear:
                setattr(parent, child_name, ScaledFp8Linear(child, compute_dtype))
                swapped += 1
    return swapped
