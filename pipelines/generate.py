"""LTX2Generator: one image-to-video request -> one mp4, around a loaded LTX2ImageToVideoPipeline.

Flow: load image -> encode prompt -> denoise (pipeline, output_type="latent") -> decode audio ->
decode video in chunks, streamed into ffmpeg while it encodes -> mp4 renamed into place.

Sizes: the model only makes multiples of 32 px and 8k+1 frames, so a request is generated at the next
size up (the conditioning image is cover-resized and centre-cropped to it, never stretched) and the
frames are centre-cropped back to exactly the requested width x height and cut to num_frames.

image_crf: left at None, so the pipeline applies its own default (CRF 33 for Gemma-3 text encoders,
i.e. LTX-2.0): the conditioning image is re-encoded as one H.264 frame through PyAV before use, as in
training. It needs the `av` package and a PIL image, which is what we pass. Costs milliseconds.

stage_seconds: "decode" is audio decode plus the video VAE decode; the video decode runs lazily while
ffmpeg encodes the previous chunk (separate process), and its time is moved from "mux" into "decode".
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image

from .decode import decode_video_chunks
from .interface import GenerationParams, GenerationResult, InvalidInputError, ProgressCallback
from .mux import DEFAULT_CRF, mux_video
from .schedule import with_bounded_shift

# LTX-2.0 guidance without the passes that do nothing for 2.0 weights (STG: perturbed_attn=False) or
# cost a forward each (modality isolation): CFG alone, one batch-2 forward per step.
_GUIDANCE_2_0 = dict(
    stg_scale=0.0,
    audio_stg_scale=0.0,
    modality_scale=1.0,
    audio_modality_scale=1.0,
    use_cross_timestep=False,
)


@dataclass(frozen=True)
class GenerationSize:
    """What the model is asked for (valid for the VAE) vs what the caller gets back."""

    width: int
    height: int
    num_frames: int
    out_width: int
    out_height: int
    out_num_frames: int


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def plan_generation_size(
    width: int, height: int, num_frames: int, *, spatial_multiple: int = 32, temporal_ratio: int = 8
) -> GenerationSize:
    """Snap up to the next size the model can produce: multiples of 32 and 8k+1 frames."""
    frames = _round_up(max(num_frames - 1, 0), temporal_ratio) + 1
    return GenerationSize(
        width=_round_up(width, spatial_multiple),
        height=_round_up(height, spatial_multiple),
        num_frames=frames,
        out_width=width,
        out_height=height,
        out_num_frames=num_frames,
    )


def load_image(image_path: Path) -> Image.Image:
    try:
        with Image.open(image_path) as probe:
            probe.verify()  # catches truncated/corrupt files that open() alone accepts
        with Image.open(image_path) as image:
            return image.convert("RGB")
    except Exception as error:  # PIL raises many types (OSError, SyntaxError, DecompressionBombError, ...)
        raise InvalidInputError(f"image: cannot decode {Path(image_path).name} ({error})") from error


def cover_and_center_crop(image: Image.Image, width: int, height: int) -> Image.Image:
    """Scale so the image covers width x height, then crop the centre: no stretching."""
    scale = max(width / image.width, height / image.height)
    scaled_w = max(width, round(image.width * scale))
    scaled_h = max(height, round(image.height * scale))
    if (scaled_w, scaled_h) != image.size:
        image = image.resize((scaled_w, scaled_h), Image.Resampling.BICUBIC)
    left = (scaled_w - width) // 2
    top = (scaled_h - height) // 2
    return image.crop((left, top, left + width, top + height))


def center_crop_frames(frames: torch.Tensor, width: int, height: int) -> torch.Tensor:
    top = (frames.shape[1] - height) // 2
    left = (frames.shape[2] - width) // 2
    return frames[:, top : top + height, left : left + width]


class _StageClock:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


class LTX2Generator:
    """Implements pipelines.interface.Generator for an LTX2ImageToVideoPipeline."""

    def __init__(
        self,
        pipe,
        *,
        num_inference_steps: int,
        x264_preset: str,
        x264_crf: int = DEFAULT_CRF,
        max_sequence_length: int = 1024,
        image_crf: int | None = None,
        decode_chunk_frames: int = 48,
    ) -> None:
        if num_inference_steps < 2:
            # The dev scheduler (shift_terminal=0.1) yields NaN with a single step.
            raise ValueError("num_inference_steps must be >= 2")
        with_bounded_shift(pipe)
        self.pipe = pipe
        self.num_inference_steps = num_inference_steps
        self.x264_preset = x264_preset
        self.x264_crf = x264_crf
        self.max_sequence_length = max_sequence_length
        self.image_crf = image_crf
        self.decode_chunk_frames = decode_chunk_frames

    @property
    def _device(self) -> torch.device:
        return self.pipe._execution_device

    def generate(
        self,
        params: GenerationParams,
        image_path: Path,
        output_path: Path,
        on_progress: ProgressCallback,
    ) -> GenerationResult:
        clock = _StageClock()
        size = plan_generation_size(
            params.width,
            params.height,
            params.num_frames,
            spatial_multiple=self.pipe.vae_spatial_compression_ratio,
            temporal_ratio=self.pipe.vae_temporal_compression_ratio,
        )
        with clock.stage("load_image"):
            image = cover_and_center_crop(load_image(image_path), size.width, size.height)

        with torch.inference_mode():
            with clock.stage("encode_prompt"):
                on_progress("encoding_prompt", 0, 1)
                embeds = self._encode_prompt(params)
                on_progress("encoding_prompt", 1, 1)

            with clock.stage("denoise"):
                on_progress("denoising", 0, self.num_inference_steps)
                video_latents, audio_latents = self._denoise(params, size, image, embeds, on_progress)

            with clock.stage("decode"):
                on_progress("decoding", 0, 1)
                audio = self._decode_audio(audio_latents)
                frames = self._frame_chunks(video_latents, size)

            # The video decode runs lazily inside the mux loop (chunks are decoded as ffmpeg asks for
            # them), so "mux" below includes that decode time; decode_in_mux records the split.
            on_progress("muxing", 0, 1)
            with clock.stage("mux"):
                decode_clock = _StageClock()
                mux_video(
                    _timed(frames, decode_clock),
                    audio,
                    self.pipe.vocoder.config.output_sampling_rate,
                    params.fps,
                    Path(output_path),
                    self.x264_preset,
                    num_frames=size.out_num_frames,
                    crf=self.x264_crf,
                )
            on_progress("muxing", 1, 1)
        video_decode = decode_clock.seconds.get("chunk", 0.0)
        clock.seconds["decode"] += video_decode
        clock.seconds["mux"] -= video_decode
        return GenerationResult(output_path=Path(output_path), seed=params.seed, stage_seconds=clock.seconds)

    def _encode_prompt(self, params: GenerationParams) -> dict:
        do_cfg = params.guidance_scale > 1.0
        positive, positive_mask, negative, negative_mask = self.pipe.encode_prompt(
            prompt=params.prompt,
            negative_prompt=params.negative_prompt,
            do_classifier_free_guidance=do_cfg,
            max_sequence_length=self.max_sequence_length,
            device=self._device,
        )
        embeds = dict(prompt_embeds=positive, prompt_attention_mask=positive_mask)
        if do_cfg:
            embeds.update(negative_prompt_embeds=negative, negative_prompt_attention_mask=negative_mask)
        return embeds

    def _denoise(self, params, size: GenerationSize, image, embeds: dict, on_progress: ProgressCallback):
        total = self.num_inference_steps

        def report_step(pipe, step: int, timestep, callback_kwargs: dict) -> dict:
            on_progress("denoising", step + 1, total)  # may raise to cancel: let it propagate
            return callback_kwargs

        output = self.pipe(
            image=image,
            **embeds,
            height=size.height,
            width=size.width,
            num_frames=size.num_frames,
            frame_rate=float(params.fps),
            num_inference_steps=total,
            guidance_scale=params.guidance_scale,
            **_GUIDANCE_2_0,
            generator=torch.Generator("cpu").manual_seed(params.seed),
            image_crf=self.image_crf,
            max_sequence_length=self.max_sequence_length,
            output_type="latent",
            callback_on_step_end=report_step,
        )
        return output.frames, output.audio

    def _decode_audio(self, audio_latents: torch.Tensor) -> np.ndarray:
        audio_vae = self.pipe.audio_vae
        mel = audio_vae.decode(audio_latents.to(audio_vae.dtype), return_dict=False)[0]
        waveform = self.pipe.vocoder(mel.to(self.pipe.vocoder.dtype))
        return waveform[0].float().cpu().numpy()

    def _frame_chunks(self, video_latents: torch.Tensor, size: GenerationSize) -> Iterator[np.ndarray]:
        for chunk in decode_video_chunks(
            self.pipe.vae, video_latents, num_frames=size.out_num_frames, chunk_frames=self.decode_chunk_frames
        ):
            yield center_crop_frames(chunk, size.out_width, size.out_height).cpu().numpy()


def _timed(chunks: Iterator[np.ndarray], clock: _StageClock) -> Iterator[np.ndarray]:
    iterator = iter(chunks)
    while True:
        with clock.stage("chunk"):
            chunk = next(iterator, None)
        if chunk is None:
            return
        yield chunk
