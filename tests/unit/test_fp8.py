"""Float8 weights (pipelines/fp8.py) on the CPU: the rounding each mode makes, the fp8 matmul's arithmetic
(torch._scaled_mm runs on the CPU with the same scales as on a GPU), the checkpoint's scales kept, and
the LoRA factors never dequantised outside their own matmul."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from pipelines.fp8 import E4M3_MAX, Fp8Linear, Fp8LoraFactor, fp8_mode, quantize_rows, store_blocks_in_fp8

FP8 = torch.float8_e4m3fn


def linear(in_features=64, out_features=48, *, seed=0, scale=0.02, dtype=torch.float32) -> torch.nn.Linear:
    torch.manual_seed(seed)
    layer = torch.nn.Linear(in_features, out_features)
    with torch.no_grad():
        layer.weight.mul_(scale / layer.weight.abs().max())  # LTX-2-like: far below e4m3's smallest normal
        layer.weight[0].mul_(40)  # rows of very different size: one scale per row keeps both precise
    return layer.to(dtype)


@pytest.mark.parametrize(
    ("value", "mode"), [(True, "storage"), (False, "off"), (None, "off"), ("off", "off"), ("compute", "compute")]
)
def test_fp8_mode_takes_the_old_switch_and_the_three_names(value, mode):
    assert fp8_mode(value) == mode


def test_unknown_fp8_mode_is_refused():
    with pytest.raises(ValueError, match="fp8: must be one of off, storage, compute"):
        fp8_mode("int4")


def test_storage_keeps_each_weight_within_half_an_e4m3_step_of_its_row():
    layer = linear()
    stored = Fp8Linear(layer, torch.float32)
    weight, restored = layer.weight.detach(), stored.dequantized()
    # e4m3 has 3 mantissa bits: a normal value is off by at most 2^-4 of itself; below 2^-6 of the row's
    # scale (subnormals) by at most half of the smallest step, 2^-10 of the scale.
    row_scale = stored.weight_scale[:, None]
    bound = torch.maximum(weight.abs() * 2**-4, row_scale * 2**-10) * 1.0001
    assert ((weight - restored).abs() <= bound).all()
    assert stored.weight_fp8.dtype == FP8 and stored.weight_scale.shape == (48,)
    # The large row did not coarsen the small ones (a per-matrix scale would flush most of them to 0).
    assert (restored[1:] != 0).float().mean() > 0.99


def test_compute_is_exactly_the_product_of_the_quantised_activations_and_weights():
    layer = linear()
    fp8 = Fp8Linear(layer, torch.float32, compute=True)
    x = torch.randn(2, 5, 64)
    rows, scales = quantize_rows(x.reshape(-1, 64), None)
    expected = (rows.double() * scales.double()) @ fp8.dequantized(torch.float64).T + layer.bias.double()
    assert torch.allclose(fp8(x).reshape(-1, 48).double(), expected, rtol=1e-5, atol=1e-7)
    # ... and within e4m3's rounding of both operands of the unquantised layer.
    reference = layer(x)
    assert (fp8(x) - reference).abs().max() < 0.1 * reference.abs().max()


def test_activation_scales_are_powers_of_two_so_dividing_by_them_is_exact():
    x = torch.randn(7, 32) * torch.logspace(-6, 3, 7)[:, None]
    quantized, scales = quantize_rows(x, None)
    assert scales.shape == (7, 1) and torch.equal(torch.exp2(torch.log2(scales).round()), scales)
    assert (quantized.float().abs().amax(dim=1) >= E4M3_MAX / 2).all()  # every row uses e4m3's top octave
    restored = quantized.float() * scales
    assert ((restored - x).abs() <= x.abs() * 2**-4 + scales * 2**-10).all()


def test_a_static_input_scale_is_used_as_given_and_clamps_what_exceeds_it():
    x = torch.tensor([[0.5, -3.0, 1000.0]])
    quantized, scales = quantize_rows(x, torch.tensor(0.01))
    assert torch.equal(scales, torch.full((1, 1), 0.01))
    assert quantized.float().tolist() == [[48.0, -288.0, E4M3_MAX]]  # 50 -> 48 (e4m3), 100000 -> 448


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_checkpoint_matrix_re_quantised_with_its_own_scale_gives_back_its_fp8_values(dtype):
    torch.manual_seed(1)
    stored = (torch.randn(48, 64) * 60).clamp(-E4M3_MAX, E4M3_MAX).to(FP8)
    scale, input_scale = torch.tensor(3.7e-4), torch.tensor(0.02)
    layer = torch.nn.Linear(64, 48, bias=False).to(dtype)
    with torch.no_grad():
        layer.weight.copy_((stored.float() * scale).to(dtype))  # what the loader reads: W * scale in dtype
    fp8 = Fp8Linear(layer, dtype, compute=True, weight_scale=scale, input_scale=input_scale)
    assert torch.equal(fp8.weight_fp8.view(torch.uint8), stored.view(torch.uint8))
    assert torch.equal(fp8.weight_scale, scale.expand(48)) and fp8.input_scale == input_scale


class _Float8Reads(TorchDispatchMode):
    """Counts the operations that turn a float8 tensor into another dtype (a dequantisation)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.ops.aten._to_copy.default, torch.ops.aten.to.dtype) and args[0].dtype == FP8:
            self.count += 1
        return func(*args, **kwargs)


def one_block_with_lora() -> torch.nn.Module:
    """transformer_blocks.0.to_q: a linear with a peft LoRA adapter "stage2" on it."""
    from peft import LoraConfig, inject_adapter_in_model

    block = torch.nn.Module()
    block.to_q = linear()
    model = torch.nn.Module()
    model.transformer_blocks = torch.nn.ModuleList([block])
    inject_adapter_in_model(LoraConfig(r=16, lora_alpha=16, target_modules=["to_q"]), model, adapter_name="stage2")
    torch.nn.init.normal_(block.to_q.lora_B["stage2"].weight, std=0.01)
    return model


def lora_wrapped(mode: str):
    """The LoRA'd linear, stored in fp8 as the transformer's blocks are."""
    model = one_block_with_lora()
    assert store_blocks_in_fp8(model, torch.float32, mode=mode) == 3  # the base matrix, A and B
    return model.transformer_blocks[0].to_q


@pytest.mark.parametrize(("mode", "dequantisations"), [("storage", 3), ("compute", 0)])
def test_lora_factors_are_not_dequantised_outside_their_own_matmul(mode, dequantisations):
    layer = lora_wrapped(mode)
    factor = layer.lora_A["stage2"]
    assert isinstance(factor, Fp8LoraFactor)
    # peft reads lora_A.weight.dtype on every call: an empty tensor of the compute dtype answers it.
    assert factor.weight.dtype == torch.float32 and factor.weight.numel() == 0
    counter = _Float8Reads()
    with torch.inference_mode(), counter:
        layer(torch.randn(3, 64))
    # storage: the base matrix, A and B, once each, for their matmuls; compute: none at all.
    assert counter.count == dequantisations


def test_checkpoint_scales_reach_the_matrix_peft_wraps_and_not_the_lora():
    model = one_block_with_lora()
    scales = {"transformer_blocks.0.to_q": (torch.tensor(1e-3), torch.tensor(0.5))}
    store_blocks_in_fp8(model, torch.float32, mode="compute", checkpoint_scales=scales)
    wrapped = model.transformer_blocks[0].to_q
    assert torch.equal(wrapped.base_layer.weight_scale, torch.full((48,), 1e-3))
    assert wrapped.base_layer.input_scale == 0.5 and wrapped.lora_A["stage2"].input_scale is None
