"""Float8 weights for the transformer's matrices: ``storage`` (fp8 in memory, bf16 matmuls) or ``compute``
(fp8 in memory and fp8 matmuls).

Each ``nn.Linear`` inside the transformer blocks (nearly all of its 19B parameters) becomes an ``Fp8Linear``:
the weight is kept as float8_e4m3fn values ``q`` with a float32 scale per output row ``s`` (``W ~= q * s``,
s = max|W_row| / 448, e4m3's largest value). Half the memory of bf16. The scale matters: LTX-2's weights
are mostly far below e4m3's smallest normal value (2^-6), where a plain cast (diffusers' layerwise casting)
keeps only one or two significant bits; scaled, every weight keeps e4m3's full 3-bit mantissa. Lightricks'
fp8 checkpoints carry one scale per matrix; a matrix read from one is re-quantised with that scale, which
gives back the checkpoint's own fp8 values bit for bit (its bf16 dequantisation is within 2^-8 of q * s,
far inside half an e4m3 step), so nothing is rounded twice.

- ``storage`` upcasts each weight to the compute dtype for its matmul: lossy only by the weight rounding.
- ``compute`` quantises the activations too and runs ``torch._scaled_mm`` (fp8 tensor cores on Hopper and
  Ada; the same numerics on a CPU): each input row gets a power-of-two scale from its own max|x| (dividing
  by a power of two is exact, so the scale handed to the matmul is exactly the one applied), or the
  checkpoint's static ``input_scale`` where Lightricks' fp8 checkpoint calibrated one, as their
  fp8-scaled-mm does. Lossier than storage: the activations lose their low mantissa bits as well.

Embeddings, norms and the input/output projections stay in the compute dtype, as they are small and
sensitive. The stage-2 LoRA's matrices (peft's lora_A / lora_B) are stored the same way: its update is a
small correction to W, so e4m3's relative error on it is a far smaller error on the result.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

E4M3_MAX = 448.0
FP8_MODES = ("off", "storage", "compute")
_FP8 = torch.float8_e4m3fn
# cuBLAS's fp8 matmul wants both matrix dimensions in multiples of 16 (the tiny models' are not) and, with
# row-wise scales, a bf16 output; a layer or dtype it cannot take runs as storage on the GPU.
_CUBLAS_ALIGNMENT = 16


def fp8_mode(value: bool | str | None) -> str:
    """``off``, ``storage`` or ``compute``; True/False (the former on/off switch) mean storage/off."""
    if value is True:
        return "storage"
    if value is False or value is None:
        return "off"
    if value not in FP8_MODES:
        raise ValueError(f"fp8: must be one of {', '.join(FP8_MODES)}; got {value!r}")
    return value


def rowwise_scales(weight: torch.Tensor) -> torch.Tensor:
    """float32 [out]: each row's max|W| / 448 (never 0, so an all-zero row stays zero)."""
    return (weight.detach().abs().amax(dim=1).float() / E4M3_MAX).clamp(min=torch.finfo(torch.float32).tiny)


class Fp8Linear(torch.nn.Module):
    """An ``nn.Linear`` with its weight in float8_e4m3fn and one float32 scale per output row."""

    weight_fp8: torch.Tensor
    weight_scale: torch.Tensor
    input_scale: torch.Tensor | None

    def __init__(
        self,
        linear: torch.nn.Linear,
        compute_dtype: torch.dtype,
        *,
        compute: bool = False,
        weight_scale: torch.Tensor | None = None,
        input_scale: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        weight = linear.weight.detach()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.compute_dtype = compute_dtype
        self.compute = compute
        if weight_scale is None:
            scale = rowwise_scales(weight)
        else:  # a checkpoint's per-matrix scale, one value per row
            scale = weight_scale.detach().float().to(weight.device).reshape(-1).expand(self.out_features).clone()
        quantized = (weight.float() / scale[:, None]).clamp(-E4M3_MAX, E4M3_MAX).to(_FP8)
        self.register_buffer("weight_fp8", quantized)
        self.register_buffer("weight_scale", scale)
        static = None if input_scale is None else input_scale.detach().float().reshape(())
        self.register_buffer("input_scale", static)
        self.bias = None if linear.bias is None else torch.nn.Parameter(linear.bias.detach().to(compute_dtype))
        self.aligned = self.in_features % _CUBLAS_ALIGNMENT == 0 and self.out_features % _CUBLAS_ALIGNMENT == 0

    def dequantized(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        dtype = dtype or self.compute_dtype
        return self.weight_fp8.to(dtype) * self.weight_scale.to(dtype)[:, None]

    @property
    def weight(self) -> torch.Tensor:
        """The dequantised weight (code that inspects ``.weight`` keeps working; the forward never calls it)."""
        return self.dequantized()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.compute and (x.device.type != "cuda" or (self.aligned and x.dtype == torch.bfloat16)):
            output = self._scaled_matmul(x)
            return output if self.bias is None else output + self.bias.to(output.dtype)
        return F.linear(x, self.dequantized(x.dtype), None if self.bias is None else self.bias.to(x.dtype))

    def _scaled_matmul(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        quantized, row_scales = quantize_rows(rows, self.input_scale)
        output = torch._scaled_mm(
            quantized,
            self.weight_fp8.t(),
            scale_a=row_scales,
            scale_b=self.weight_scale[None, :],
            out_dtype=x.dtype,
        )
        return output.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        kind = "compute" if self.compute else "storage"
        static = ", static input scale" if self.input_scale is not None else ""
        return f"in_features={self.in_features}, out_features={self.out_features}, fp8 {kind}{static}"


class Fp8LoraFactor(Fp8Linear):
    """A LoRA matrix (peft's lora_A / lora_B) in fp8. peft reads ``lora_A.weight.dtype`` on every call to
    cast its input; a dequantising ``weight`` would dequantise A on every call for that alone, so here
    ``weight`` is an empty tensor of the compute dtype on the factor's device (the values are in
    ``weight_fp8``/``weight_scale``; ``dequantized()`` gives them)."""

    _dtype_probe: torch.Tensor

    def __init__(self, linear: torch.nn.Linear, compute_dtype: torch.dtype, *, compute: bool = False) -> None:
        super().__init__(linear, compute_dtype, compute=compute)
        self.register_buffer("_dtype_probe", torch.empty(0, dtype=compute_dtype, device=linear.weight.device))

    @property
    def weight(self) -> torch.Tensor:
        return self._dtype_probe


def quantize_rows(rows: torch.Tensor, static_scale: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """[M, K] activations -> (e4m3 values, float32 [M, 1] scales) with rows ~= values * scales.

    Without a static scale each row gets the power of two just above max|row| / 448: dividing by it is
    exact in any float format, so the only rounding is e4m3's own."""
    if static_scale is not None:
        scale = static_scale.to(rows.dtype)
        quantized = (rows / scale).clamp_(-E4M3_MAX, E4M3_MAX).to(_FP8)  # in place: one temporary, not two
        return quantized, scale.float().expand(rows.shape[0], 1).contiguous()
    largest = rows.abs().amax(dim=1, keepdim=True).float().clamp(min=torch.finfo(torch.float32).tiny)
    scale = torch.exp2(torch.ceil(torch.log2(largest / E4M3_MAX)))
    quantized = (rows / scale.to(rows.dtype)).clamp_(-E4M3_MAX, E4M3_MAX).to(_FP8)
    return quantized, scale


def store_blocks_in_fp8(
    transformer: torch.nn.Module,
    compute_dtype: torch.dtype,
    *,
    mode: str = "storage",
    checkpoint_scales: dict[str, tuple[torch.Tensor, torch.Tensor | None]] | None = None,
) -> int:
    """Swap every nn.Linear under ``transformer_blocks`` for an Fp8Linear (``mode``: storage or compute);
    returns how many.

    That includes the stage-2 LoRA's A and B matrices (rank 384 on every block matrix: 3.7B parameters,
    6.9 GiB in bf16), which peft keeps as nn.Linear in per-adapter ModuleDicts; their wrapped base layers
    are swapped the same way. ``checkpoint_scales`` (module name -> (weight_scale, input_scale or None),
    from Lightricks' fp8 checkpoint) gives a matrix its checkpoint's scales instead of new ones.
    """
    if mode not in ("storage", "compute"):
        raise ValueError(f"fp8 storage mode must be storage or compute; got {mode!r}")
    compute = mode == "compute"
    scales = checkpoint_scales or {}
    swapped = 0
    blocks: torch.nn.Module = transformer.transformer_blocks  # type: ignore[assignment]
    for parent_name, parent in list(blocks.named_modules(prefix="transformer_blocks")):
        for child_name, child in list(parent.named_children()):
            if type(child) is not torch.nn.Linear:
                continue
            if parent_name.rsplit(".", 1)[-1] in ("lora_A", "lora_B"):
                replacement: Fp8Linear = Fp8LoraFactor(child, compute_dtype, compute=compute)
            else:
                # peft wraps a LoRA'd matrix: its own weight is at <name>.base_layer.
                name = f"{parent_name}.{child_name}".removesuffix(".base_layer")
                weight_scale, input_scale = scales.get(name, (None, None))
                replacement = Fp8Linear(
                    child, compute_dtype, compute=compute, weight_scale=weight_scale, input_scale=input_scale
                )
            setattr(parent, child_name, replacement)
            swapped += 1
    return swapped


def set_fp8_compute(module: torch.nn.Module, compute: bool) -> int:
    """Switch every Fp8Linear under ``module`` between storage and compute (the weights stay as they are);
    returns how many."""
    layers = [layer for layer in module.modules() if isinstance(layer, Fp8Linear)]
    for layer in layers:
        layer.compute = compute
    return len(layers)
