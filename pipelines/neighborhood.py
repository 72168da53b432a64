"""3D neighbourhood attention for LTX-2.5's diffusion decoder, computed window by window in bounded memory.

Each query at (t, h, w) attends to the ``kernel`` box of keys around it, the box shifted inward at the grid's
borders so it always holds ``kt * kh * kw`` keys (NATTEN's ``na3d`` rule, which diffusers' FlexAttention
processor reproduces with a block mask). diffusers ships two processors: FlexAttention, which outside
``torch.compile`` materialises the full token-by-token score matrix (a 256x256, 17-frame decode already needs
tens of GB), and NATTEN, whose kernels are downloaded from the Hub at run time (not possible offline, no CPU
path). This one gathers each query's window explicitly, a slab of queries at a time, so memory stays bounded
at any video size, on the CPU and the GPU alike; the parity suite compares it with the FlexAttention one.
"""

from __future__ import annotations

from typing import Any

import torch

# Elements of gathered keys (and as many values) held at once: 2^25 float32 values are 128 MiB each.
DEFAULT_GATHER_ELEMENTS = 1 << 25


def window_starts(length: int, kernel: int, device: torch.device) -> torch.Tensor:
    """Where each position's window begins: centred, shifted inward at both ends."""
    positions = torch.arange(length, device=device)
    return torch.clamp(positions - kernel // 2, 0, length - kernel)


def _slab_sizes(grid: tuple[int, int, int], window: int, per_token: int, budget: int) -> tuple[int, int, int]:
    """Query slab (frames, rows, columns) whose gathered windows stay within ``budget`` elements."""
    frames, rows, columns = grid
    per_query = window * per_token
    slab_columns = min(columns, max(1, budget // per_query))
    slab_rows = min(rows, max(1, budget // (per_query * slab_columns)))
    slab_frames = min(frames, max(1, budget // (per_query * slab_columns * slab_rows)))
    return slab_frames, slab_rows, slab_columns


def _window_rows(starts: list[torch.Tensor], kernel: tuple[int, ...], grid: tuple[int, int, int]) -> torch.Tensor:
    """Flat token index of every key in each query's window, for the slab whose per-axis window starts are
    ``starts``: [t, h, w, kt*kh*kw], window keys in (t, h, w) order."""
    device = starts[0].device
    index_t, index_h, index_w = (
        start[:, None] + torch.arange(k, device=device)[None, :] for start, k in zip(starts, kernel, strict=True)
    )
    _, rows, columns = grid
    flat = (
        index_t[:, None, None, :, None, None] * (rows * columns)
        + index_h[None, :, None, None, :, None] * columns
        + index_w[None, None, :, None, None, :]
    )  # [t, h, w, kt, kh, kw]
    return flat.reshape(*flat.shape[:3], -1)


def neighborhood_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    kernel_size: tuple[int, int, int],
    *,
    gather_elements: int = DEFAULT_GATHER_ELEMENTS,
) -> torch.Tensor:
    """Softmax(q . k) v over each query's window. ``query`` [B, T, H, W, N, D] is already scaled (diffusers'
    decoder folds 1/sqrt(D) into it); softmax in float32. Returns [B, T, H, W, N, D]."""
    batch, frames, rows, columns, heads, dim = query.shape
    grid = (frames, rows, columns)
    kernel = tuple(min(k, n) for k, n in zip(kernel_size, grid, strict=True))
    starts = [window_starts(n, k, query.device) for n, k in zip(grid, kernel, strict=True)]
    window = kernel[0] * kernel[1] * kernel[2]
    slab = _slab_sizes(grid, window, batch * heads * dim, gather_elements)
    output = torch.empty_like(query)
    # Heads first, one row per token: a gather then lays each query's window out contiguously, and the
    # scores and the weighted sum are batched matrix products over the slab's queries.
    flat_keys = key.reshape(batch, frames * rows * columns, heads, dim).transpose(1, 2).contiguous()
    flat_values = value.reshape(batch, frames * rows * columns, heads, dim).transpose(1, 2).contiguous()
    for t0 in range(0, frames, slab[0]):
        for h0 in range(0, rows, slab[1]):
            for w0 in range(0, columns, slab[2]):
                ranges = [slice(t0, t0 + slab[0]), slice(h0, h0 + slab[1]), slice(w0, w0 + slab[2])]
                slab_starts = [start[part] for start, part in zip(starts, ranges, strict=True)]
                window_rows = _window_rows(slab_starts, kernel, grid)  # [t, h, w, K]
                slab_shape = window_rows.shape[:3]
                queries_in_slab = window_rows.shape[0] * window_rows.shape[1] * window_rows.shape[2]
                shape = (batch, heads, queries_in_slab, window, dim)
                keys = flat_keys.index_select(2, window_rows.reshape(-1)).view(shape)
                values = flat_values.index_select(2, window_rows.reshape(-1)).view(shape)
                queries = query[:, ranges[0], ranges[1], ranges[2]].reshape(batch, queries_in_slab, heads, dim)
                scores = torch.matmul(keys, queries.transpose(1, 2).unsqueeze(-1)).squeeze(-1)  # [B, N, S, K]
                weights = torch.softmax(scores.float(), dim=-1).to(values.dtype).unsqueeze(-2)
                attended = torch.matmul(weights, values).squeeze(-2)  # [B, N, S, D]
                output[:, ranges[0], ranges[1], ranges[2]] = attended.transpose(1, 2).reshape(
                    batch, *slab_shape, heads, dim
                )
    return output


class WindowedNeighborhoodAttnProcessor:
    """An attention processor for diffusers' ``LTX2VideoVaeNeighborhoodAttention`` (the diffusion decoder's
    attention), computing the same neighbourhood attention as its FlexAttention and NATTEN processors."""

    def __init__(self, gather_elements: int = DEFAULT_GATHER_ELEMENTS) -> None:
        self.gather_elements = gather_elements

    def __call__(self, attn, hidden_states: torch.Tensor, block_mask=None) -> torch.Tensor:
        batch, frames, rows, columns, _ = hidden_states.shape
        query, key, value = attn.project_qkv(hidden_states)
        attended = neighborhood_attention(query, key, value, attn.kernel_size, gather_elements=self.gather_elements)
        return attn.to_out[0](attended.reshape(batch, frames, rows, columns, attn.heads * attn.head_dim))


def use_windowed_attention(diffusion_decoder, gather_elements: int = DEFAULT_GATHER_ELEMENTS) -> None:
    """Switch every neighbourhood attention of a diffusion decoder to the windowed processor (no weights change)."""
    from diffusers.models.autoencoders.ltx2_diffusion_decoder import LTX2VideoVaeNeighborhoodAttention

    processor: Any = WindowedNeighborhoodAttnProcessor(gather_elements)  # diffusers types processors by union
    for module in diffusion_decoder.modules():
        if isinstance(module, LTX2VideoVaeNeighborhoodAttention):
            module.set_processor(processor)
