"""LTX2Generator: one image-to-video request -> one mp4, around a loaded LTX2ImageToVideoPipeline.

Flow: load image -> encode prompt (once, shared by every stage) -> denoise with the recipe
(pipelines/recipes.py, latents out) -> decode audio -> decode video in chunks, streamed into ffmpeg
while it encodes -> mp4 renamed into place.

Sizes: the model only makes multiples of 32 px (64 for the two-stage recipes) and 8k+1 frames, so a
request is generated at the next size up (the conditioning image is cover-resized and centre-cropped to
it, never stretched) and the frames are centre-cropped back to exactly the requested width x height
and cut to num_frames.

image_crf: left at None, so the pipeline applies its own default (CRF 33 for Gemma-3 text encoders,
i.e. LTX-2.0): the conditioning image is re-encoded as one H.264 frame through PyAV before use, as in
training. It needs the `av` package and a PIL image, which is what we pass. Costs milliseconds.

stage_seconds: load_image, encode_prompt, then "denoise" (one-stage) or "encode_image", "stage1", "upsample",
"stage2", then decode_audio, decode_video and mux. The video decode runs lazily while ffmpeg encodes
the previous chunk (separate process); its time is moved from "mux" into "decode_video".
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
from .interface import GenerationParams, GenerationResult, GpuOutOfMemory, InvalidInputError, ProgressCallback
from .mux import DEFAULT_CRF, mux_video
from .recipes import DenoiseJob, RecipeRunner, recipe_spec
from .schedule import with_bounded_shift


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
    """Seconds per stage. CUDA kernels run asynchronously, so each stage waits for the GPU work it queued:
    otherwise its time would show up in whichever later stage first copies a result to the host."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            if torch.cuda.is_initialized():
                torch.cuda.synchronize()
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


class LTX2Generator:
    """Implements pipelines.interface.Generator for a loaded LTX2Bundle and one recipe."""

    def __init__(
        self,
        bundle,
        *,
        recipe: str = "two-stage",
        num_inference_steps: int,
        x264_preset: str,
        x264_crf: int = DEFAULT_CRF,
        max_sequence_length: int = 1024,
        image_crf: int | None = None,
        decode_chunk_frames: int = 48,
        use_vae_decode: bool = False,
    ) -> None:
        if num_inference_steps < 2:
            # The dev scheduler (shift_terminal=0.1) yields NaN with a single step.
            raise ValueError("num_inference_steps must be >= 2")
        with_bounded_shift(bundle.pipe)
        self.pipe = bundle.pipe
        self.after_prompt = bundle.after_prompt
        self.spec = recipe_spec(recipe, num_inference_steps)
        self.runner = RecipeRunner(bundle, self.spec, max_sequence_length=max_sequence_length, image_crf=image_crf)
        self.x264_preset = x264_preset
        self.x264_crf = x264_crf
        self.max_sequence_length = max_sequence_length
        self.decode_chunk_frames = decode_chunk_frames
        # With VAE tiling (offloaded small GPUs) the VAE's own tiled decode bounds memory spatially too.
        self.use_vae_decode = use_vae_decode

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
        try:
            return self._generate(params, image_path, output_path, on_progress)
        except torch.cuda.OutOfMemoryError as error:
            raise GpuOutOfMemory(
                f"the GPU ran out of memory at {params.width}x{params.height}, {params.num_frames} frames "
                f"({str(error).splitlines()[0]}); try a smaller size or fewer frames, or start the server with "
                "--offload model/group"
            ) from None
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def _generate(self, params, image_path: Path, output_path: Path, on_progress: ProgressCallback):
        clock = _StageClock()
        size = plan_generation_size(
            params.width,
            params.height,
            params.num_frames,
            spatial_multiple=self.pipe.vae_spatial_compression_ratio * self.spec.spatial_factor,
            temporal_ratio=self.pipe.vae_temporal_compression_ratio,
        )
        with clock.stage("load_image"):
            image = cover_and_center_crop(load_image(image_path), size.width, size.height)

        total_steps = self.spec.total_steps
        with torch.inference_mode():
            with clock.stage("encode_prompt"):
                on_progress("encoding_prompt", 0, 1)
                embeds = self._encode_prompt(params)
                if self.after_prompt is not None:
                    self.after_prompt()
                on_progress("encoding_prompt", 1, 1)

            on_progress("denoising", 0, total_steps)
            job = DenoiseJob(
                image=image,
                width=size.width,
                height=size.height,
                num_frames=size.num_frames,
                fps=params.fps,
                guidance_scale=params.guidance_scale,
                embeds=embeds,
                generator=torch.Generator("cpu").manual_seed(params.seed),
                on_step=lambda step: on_progress("denoising", step, total_steps),
                stage=clock.stage,
            )
            video_latents, audio_latents = self.runner.run(job)

            on_progress("decoding", 0, 1)
            with clock.stage("decode_audio"):
                audio = self._decode_audio(audio_latents)
            frames = self._frame_chunks(video_latents, size)

            # The video decode runs lazily inside the mux loop (chunks are decoded as ffmpeg asks for
            # them): its time is measured per chunk and moved from "mux" to "decode_video".
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
        clock.seconds["decode_video"] = video_decode
        clock.seconds["mux"] -= video_decode
        return GenerationResult(output_path=Path(output_path), seed=params.seed, stage_seconds=clock.seconds)

    def _encode_prompt(self, params: GenerationParams) -> dict:
        # No forward pass is spent on the negative prompt when nothing will use it.
        do_cfg = self.spec.uses_guidance and params.guidance_scale > 1.0
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

    def _decode_audio(self, audio_latents: torch.Tensor) -> np.ndarray:
        audio_vae = self.pipe.audio_vae
        mel = audio_vae.decode(audio_latents.to(audio_vae.dtype), return_dict=False)[0]
        waveform = self.pipe.vocoder(mel.to(self.pipe.vocoder.dtype))
        return waveform[0].float().cpu().numpy()

    def _frame_chunks(self, video_latents: torch.Tensor, size: GenerationSize) -> Iterator[np.ndarray]:
        vae = self.pipe.vae
        # Model offload moves a component to the GPU when its forward (or decode) is called; the chunked
        # decode calls the decoder's blocks directly, so bring the VAE over first.
        onload = getattr(vae, "_hf_hook", None)
        if onload is not None and hasattr(onload, "pre_forward"):
            onload.pre_forward(vae)
        for chunk in decode_video_chunks(
            vae,
            video_latents,
            num_frames=size.out_num_frames,
            chunk_frames=self.decode_chunk_frames,
            use_vae_decode=self.use_vae_decode,
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
