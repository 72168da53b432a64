"""Memory-bounded decoding of LTX-2 video latents straight to uint8 frames, chunk by chunk.

The video VAE decoder runs cheap low-resolution stages first and one expensive last up-block at
(full resolution / patch size) for every output frame; the last stage's float32 activations for a
whole 720x1280x181 clip are several GB. So the low-resolution "head" runs once on all latents and only
the last up-block + output conv + unpatchify (the "tail") runs in temporal chunks, each with a halo of
neighbouring frames so every convolution sees the same inputs it would in a one-shot decode: chunks
join without seams and the result matches vae.decode up to float rounding.
"""

from __future__ import annotations

import sys
from typing import Iterator

import torch

# A chunk length no clip reaches: one pass for code that steps through a clip chunk by chunk.
ONE_PASS_FRAMES = sys.maxsize


def _decoder_head(decoder, latents: torch.Tensor, causal: bool) -> torch.Tensor:
    hidden = decoder.conv_in(latents, causal=causal)
    hidden = decoder.mid_block(hidden, None, causal=causal)
    for up_block in decoder.up_blocks[:-1]:
        hidden = up_block(hidden, None, causal=causal)
    return hidden


def _decoder_tail_uint8(decoder, hidden: torch.Tensor, causal: bool) -> torch.Tensor:
    """Last up-block + output conv, then uint8 [F, H, W, 3] frames.

    The [-1, 1] -> uint8 mapping is elementwise, so it runs on the conv output before unpatchifying:
    the one big layout shuffle (patches -> pixels, channels last) then moves 1 byte per value, not 4.
    """
    hidden = decoder.up_blocks[-1](hidden, None, causal=causal)
    hidden = decoder.norm_out(hidden)
    hidden = decoder.conv_act(hidden)
    hidden = decoder.conv_out(hidden, causal=causal)
    pixels = _to_uint8(hidden[0])
    p, p_t = decoder.patch_size, decoder.patch_size_t
    _, frames, height, width = pixels.shape
    # Channel layout (see LTX2VideoDecoder3d.forward): (rgb, p_t, p_w, p_h); p_w is the minor patch
    # index along width, p_h along height.
    pixels = pixels.reshape(-1, p_t, p, p, frames, height, width)
    pixels = pixels.permute(4, 1, 5, 3, 6, 2, 0)  # (F, p_t, h, p_h, w, p_w, rgb)
    return pixels.reshape(frames * p_t, height * p, width * p, -1)


def _to_uint8(values: torch.Tensor) -> torch.Tensor:
    # [-1, 1] -> [0, 255] truncated, the same operations as Lightricks' decode_video (so frames match theirs
    # byte for byte); in place to save memory.
    return values.add_(1.0).div_(2.0).clamp_(0.0, 1.0).mul_(255.0).to(torch.uint8)


def _tail_temporal_upscale(decoder) -> int:
    upsamplers = decoder.up_blocks[-1].upsamplers
    return upsamplers[0].stride[0] if upsamplers else 1


def _tail_halo(decoder) -> int:
    # Every 3-tap temporal conv after the upsampler widens the receptive field by one output frame;
    # the upsampler's own conv adds one input frame. One spare frame on top keeps it safe.
    num_convs = 2 * len(decoder.up_blocks[-1].resnets) + 1
    if decoder.up_blocks[-1].conv_in is not None:
        num_convs += 2
    return num_convs + 2


def supports_chunked_decode(vae) -> bool:
    # Timestep-conditioned decoders (LTX 0.9.x style) take a noise timestep; this path does not model it.
    return not vae.config.timestep_conditioning and vae.config.patch_size_t == 1


def to_uint8_frames(video: torch.Tensor) -> torch.Tensor:
    """[B=1, 3, F, H, W] in [-1, 1] -> uint8 [F, H, W, 3] (same mapping as diffusers' postprocess)."""
    return _to_uint8(video[0].clone()).permute(1, 2, 3, 0)


@torch.no_grad()
def decode_video_chunks(
    vae, latents: torch.Tensor, *, num_frames: int, chunk_frames: int = 24, use_vae_decode: bool = False
) -> Iterator[torch.Tensor]:
    """Yield decoded uint8 frames [f, H, W, 3] for the first num_frames frames, chunk_frames at a time
    (0: all of them in one pass, which skips the chunks' overlapping halos but holds the whole clip's
    full-resolution activations at once).

    latents: denormalised [1, C, T, h, w] (what the pipeline returns with output_type="latent").
    use_vae_decode: decode in one vae.decode call instead (which honours vae.enable_tiling()).
    """
    if chunk_frames < 0:
        raise ValueError(f"chunk_frames: must be >= 0 (0: one pass); got {chunk_frames}")
    chunk_frames = chunk_frames or max(num_frames, 1)
    decoder = vae.decoder
    causal = decoder.is_causal
    latents = latents.to(vae.dtype)
    if use_vae_decode or not supports_chunked_decode(vae):
        video = vae.decode(latents, None, return_dict=False)[0]
        yield to_uint8_frames(video[:, :, :num_frames])
        return

    hidden = _decoder_head(decoder, latents, causal)
    upscale = _tail_temporal_upscale(decoder)
    halo = _tail_halo(decoder)
    head_frames = hidden.shape[2]
    total_frames = min(num_frames, upscale * (head_frames - 1) + 1)
    # The tail's upsampler drops its first (upscale - 1) frames, so slice output frame j of an input
    # window starting at `start` is global output frame upscale * start + j.
    for first in range(0, total_frames, chunk_frames):
        last = min(first + chunk_frames, total_frames)
        start = max(0, first // upscale - halo)
        stop = min(head_frames, -(-last // upscale) + halo)
        window = _decoder_tail_uint8(decoder, hidden[:, :, start:stop], causal)
        offset = upscale * start
        yield window[first - offset : last - offset]
