"""LTX-2.5 in the server: its bundle, its generator (LTX-2's own sampling loop, then 2.5's diffusion decoder),
its loader from a per-component weights folder, and the writer of that layout.

What an LTX-2.5 request runs, as diffusers 0.42.1's LTX-2.5 pipeline does (``LTX25AutoBlocks``): the prompt
through Gemma 4 and the connectors, the same joint audio/video denoising loop as LTX-2 (pipelines/recipes.py,
one stage), the audio through the audio VAE and the 48 kHz vocoder, and the video through the *diffusion
decoder* instead of the VAE's convolutional decoder. That decoder is itself a small diffusion model: it
upsamples the latents into a context volume (neighbourhood attention), then predicts the pixels in one step
from noise it draws (seeded here with the request's seed, so a seed gives the same video). Its three phases
are reported as their own progress stage, ``diffusion_decoding`` (step 1, 2, 3 of 3).

Text-to-video runs as LTX-2's does (no image held); keyframes are refused on LTX-2.5.
Not used: the duration head (requests carry num_frames) and the prompt enhancer (prompts are used as sent).
The conditioning image is re-encoded at CRF 18, LTX-2.5's value (diffusers' LTX2_5_IMAGE_CRF, which it
takes from ltx-pipelines' LTX_2_4_IMAGE_CRF), not LTX-2's 33.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from .generate import GenerationSize, LTX2Generator, center_crop_frames
from .interface import InvalidInputError
from .loader import LTX2Bundle
from .ltx25_layout import DIFFUSION_DECODER_DIR, require_ltx25_weights
from .neighborhood import use_windowed_attention

log = logging.getLogger("ltx2.ltx25")

LTX25_IMAGE_CRF = 18
DIFFUSION_DECODING_STAGE = "diffusion_decoding"
_DECODE_PHASES = 3  # context stages 1-3, stage 4, the pixel diffusion step(s)


@dataclass
class LTX25Bundle(LTX2Bundle):
    """An LTX2Bundle plus the diffusion decoder (not a component of diffusers' image-to-video pipeline)."""

    diffusion_decoder: Any = None

    @classmethod
    def from_bundle(cls, bundle: LTX2Bundle, *, diffusion_decoder) -> "LTX25Bundle":
        values = {f.name: getattr(bundle, f.name) for f in fields(LTX2Bundle)}
        use_windowed_attention(diffusion_decoder)
        return cls(**values, diffusion_decoder=diffusion_decoder.eval())

    @property
    def generator_class(self) -> type:
        return LTX25Generator


# ---- the decoder's smallest input -------------------------------------------------------------------------


def _smallest(fits, start: int = 1) -> int:
    size = start
    while not fits(size):
        size += 1
    return size


def decoder_minimum(config) -> tuple[int, int, int]:
    """The smallest latent grid (frames, rows, columns) the diffusion decoder accepts.

    Every neighbourhood-attention stage needs its grid at least as large as its kernel on each axis: the
    upsampling strides grow the grid stage by stage; temporally the decoder first appends copies of the last
    latent frame, a 2x temporal upsample drops one leading frame, and the copies (x8) are cut before the last
    stage. LTX-2.5's decoder needs 3 latent frames (17 video frames) and 7 latent rows and columns (224 px).
    """
    kernels = [tuple(k) for k in config.decoder_stage_kernels] + [tuple(config.decoder_stage5_kernel)]
    strides = [tuple(s) for s in config.decoder_upsample_strides]
    pad = (kernels[0][0] // 2) * 2

    def frames_fit(frames: int) -> bool:
        length = frames + pad
        for kernel, stride in zip(kernels, strides, strict=False):
            if length < kernel[0]:
                return False
            length = length * stride[0] - (1 if stride[0] == 2 else 0)
        return length - pad * config.temporal_compression_ratio >= kernels[-1][0]

    def spatial_fit(axis: int):
        def fits(cells: int) -> bool:
            for kernel, stride in zip(kernels, strides, strict=False):
                if cells < kernel[axis]:
                    return False
                cells *= stride[axis]
            return cells >= kernels[-1][axis]

        return fits

    return _smallest(frames_fit), _smallest(spatial_fit(1)), _smallest(spatial_fit(2))


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def raise_to_decoder_minimum(
    size: GenerationSize, minimum: tuple[int, int, int], *, spatial_multiple: int, temporal_ratio: int, pixels: int
) -> GenerationSize:
    """``size`` grown where it is below the decoder's minimum (the output is still cropped to the request)."""
    frames, rows, columns = minimum
    return GenerationSize(
        width=max(size.width, _round_up(columns * pixels, spatial_multiple)),
        height=max(size.height, _round_up(rows * pixels, spatial_multiple)),
        num_frames=max(size.num_frames, temporal_ratio * (frames - 1) + 1),
        out_width=size.out_width,
        out_height=size.out_height,
        out_num_frames=size.out_num_frames,
    )


# ---- the generator -----------------------------------------------------------------------------------------


class LTX25Generator(LTX2Generator):
    """LTX2Generator with LTX-2.5's image CRF, size floor and diffusion-decoder decode."""

    def __init__(self, bundle: LTX25Bundle, **options) -> None:
        options.setdefault("image_crf", LTX25_IMAGE_CRF)
        super().__init__(bundle, **options)
        self.diffusion_decoder = bundle.diffusion_decoder
        # 0.8 GB in bf16 at full size: kept on the execution device under every offload mode.
        self.diffusion_decoder.to(self._device)
        if self.use_vae_decode:  # small GPUs: the decoder's own tiles bound its memory
            self.diffusion_decoder.enable_tiling()
        self.minimum_latents = decoder_minimum(self.diffusion_decoder.config)
        self._request: tuple[int, Any] | None = None

    def generate(self, params, image_path, output_path, on_progress, keyframe_paths=()):
        # Text-to-video (no image) runs the same loop with nothing held; keyframes have no LTX-2.5 reference
        # (neither diffusers' LTX-2.5 pipeline nor ltx-pipelines offers them) to check them against.
        for name in ("keyframes", "loras"):
            if getattr(params, name):
                raise InvalidInputError(f"{name}: not offered by LTX-2.5")
        # The decode hook (_frame_chunks) takes no request: it needs the seed and the progress callback.
        self._request = (params.seed, on_progress)
        try:
            return super().generate(params, image_path, output_path, on_progress)
        finally:
            self._request = None

    def _plan_size(self, params) -> GenerationSize:
        pipe = self.pipe
        return raise_to_decoder_minimum(
            super()._plan_size(params),
            self.minimum_latents,
            spatial_multiple=pipe.vae_spatial_compression_ratio * self.spec.spatial_factor,
            temporal_ratio=pipe.vae_temporal_compression_ratio,
            pixels=pipe.vae_spatial_compression_ratio,
        )

    def _frame_chunks(self, video_latents: torch.Tensor, size: GenerationSize) -> Iterator[np.ndarray]:
        seed, on_progress = self._request if self._request is not None else (0, lambda *report: None)
        video = self.decode_video(video_latents, seed, on_progress)[:, :, : size.out_num_frames]
        frames = _to_uint8_frames(video)
        for start in range(0, frames.shape[0], self.decode_chunk_frames):
            chunk = frames[start : start + self.decode_chunk_frames]
            yield center_crop_frames(chunk, size.out_width, size.out_height).cpu().numpy()

    def decode_video(self, latents: torch.Tensor, seed: int, on_progress=lambda *report: None) -> torch.Tensor:
        """Un-normalised video latents [1, C, F, h, w] -> pixels [1, 3, 8(F-1)+1, 32h, 32w] in [-1, 1].

        The untiled path runs the decoder's phases one by one, exactly as its forward does, to report each.
        """
        decoder = self.diffusion_decoder
        device = next(decoder.parameters()).device
        latents = latents.to(device=device, dtype=decoder.dtype)
        generator = torch.Generator(device).manual_seed(seed)
        on_progress(DIFFUSION_DECODING_STAGE, 0, _DECODE_PHASES)
        if self.use_vae_decode:
            video = decoder.decode(latents, generator=generator, return_dict=False)[0]
            on_progress(DIFFUSION_DECODING_STAGE, _DECODE_PHASES, _DECODE_PHASES)
            return video
        inner = decoder.decoder
        features = inner.forward_stages_1_to_3(latents)
        on_progress(DIFFUSION_DECODING_STAGE, 1, _DECODE_PHASES)
        context = inner.forward_stage_4(features)
        on_progress(DIFFUSION_DECODING_STAGE, 2, _DECODE_PHASES)
        from diffusers.utils.torch_utils import randn_tensor

        shape = (
            latents.shape[0],
            inner.out_channels,
            context.shape[1],
            *(n * inner.patch_size for n in context.shape[2:4]),
        )
        noise = randn_tensor(shape, generator=generator, device=device, dtype=latents.dtype)
        video = inner.denoise(context, noise, inner.default_num_inference_steps)
        on_progress(DIFFUSION_DECODING_STAGE, _DECODE_PHASES, _DECODE_PHASES)
        return video


def _to_uint8_frames(video: torch.Tensor) -> torch.Tensor:
    """[1, 3, F, H, W] in [-1, 1] -> uint8 [F, H, W, 3], the mapping (truncating) of pipelines/decode.py."""
    from .decode import to_uint8_frames

    return to_uint8_frames(video.float())


# ---- loading it --------------------------------------------------------------------------------------------


def load_ltx25_bundle(weights_dir: str | Path, dtype: torch.dtype, *, recipe: str = "one-stage") -> LTX25Bundle:
    """LTX-2.5 from a per-component weights folder (offline), for the one-stage recipe it runs.

    diffusers' standard image-to-video pipeline takes the text path, transformer, VAEs and vocoder (the same
    classes its LTX-2.5 modular pipeline loads); the diffusion decoder is loaded from its own folder. The
    prompt enhancer and its processor are never loaded, nor the duration head.
    """
    from diffusers import LTX2ImageToVideoPipeline, LTX2VideoDiffusionDecoderModel

    from .loader import _finish_bundle

    if recipe != "one-stage":
        raise ValueError(f"recipe: ltx-2.5 runs one-stage only; got {recipe!r}")
    weights_dir = Path(weights_dir)
    require_ltx25_weights(weights_dir)
    pipe = LTX2ImageToVideoPipeline.from_pretrained(
        weights_dir,
        dtype=dtype,
        local_files_only=True,
        prompt_enhancer=None,
        processor=None,
        duration_head=None,
    )
    decoder = LTX2VideoDiffusionDecoderModel.from_pretrained(
        weights_dir / DIFFUSION_DECODER_DIR, dtype=dtype, local_files_only=True
    )
    base = _finish_bundle(pipe, None, adapter=None)
    log.info("LTX-2.5 loaded from %s (diffusion decoder %s)", weights_dir, DIFFUSION_DECODER_DIR)
    return LTX25Bundle.from_bundle(base, diffusion_decoder=decoder)


# ---- writing the layout ------------------------------------------------------------------------------------

# The components diffusers' standard LTX-2 pipeline takes: it writes model_index.json and their folders.
_STANDARD_COMPONENTS = (
    "scheduler",
    "vae",
    "audio_vae",
    "text_encoder",
    "tokenizer",
    "connectors",
    "transformer",
    "vocoder",
    "duration_head",
)


def write_per_component_layout(components: dict, directory: str | Path) -> None:
    """Save ``components`` (names as diffusers' LTX-2.5 blocks use them) as LTX-2.5's hub repository holds
    them, with diffusers' own writers: the standard pipeline's ``save_pretrained`` (model_index.json and a
    folder per component), then the LTX-2.5 modular pipeline's (modular_model_index.json, diffusion_decoder/)."""
    from diffusers import LTX2Pipeline, LTX25AutoBlocks

    directory = Path(directory)
    standard: Any = LTX2Pipeline(**{name: components[name] for name in _STANDARD_COMPONENTS})
    standard.save_pretrained(directory)
    blocks: Any = LTX25AutoBlocks()
    modular = blocks.init_pipeline()
    modular.update_components(**{k: v for k, v in components.items() if k in modular._component_specs})
    modular.save_pretrained(str(directory), overwrite_modular_index=True)
