"""LTX2Generator: one request (image-to-video, text-to-video, keyframes) -> one mp4, around a loaded
LTX2ImageToVideoPipeline.

Flow: load image -> encode prompt (once, shared by every stage) -> denoise with the recipe
(pipelines/recipes.py, latents out) -> decode audio -> decode video in chunks, streamed into ffmpeg
while it encodes -> mp4 renamed into place.

Sizes: the model only makes multiples of 32 px (64 for the two-stage recipes) and 8k+1 frames, so a
request is generated at the next size up (the conditioning image is cover-resized and centre-cropped to
it, never stretched) and the frames are centre-cropped back to exactly the requested width x height
and cut to num_frames.

image_crf: the conditioning image is re-encoded once as one H.264 frame (CRF 33 by default, as
Lightricks' pipelines do, since LTX-2 was trained on video frames), then scaled and centre-cropped to
each stage's size (pipelines/conditioning.py). Costs milliseconds.

stage_seconds: load_image, enhance_prompt (asked for with enhance_prompt), encode_prompt, then "denoise"
(one-stage) or "stage1", "upsample", "stage2" (each stage encodes the conditioning images at its own size),
then decode_audio, decode_video and mux.
The video decode runs lazily while ffmpeg encodes the previous chunk (separate process); its time is
moved from "mux" into "decode_video".

Progress stages (on_progress): enhancing_prompt (with enhance_prompt), encoding_prompt, denoising,
decoding_audio, decoding_video (per decoded chunk: frames decoded / total) and muxing (ffmpeg's finish once
the last chunk is in).
"""

from __future__ import annotations

import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from .conditioning import ImageCondition, compressed_like_training
from .decode import ONE_PASS_FRAMES, decode_video_chunks
from .denoise import Contexts
from .enhance import PromptEnhancer
from .guidance import DEFAULT_GUIDANCE_POLICY, GuidancePolicy, guidance_policy
from .interface import GenerationResult, GpuOutOfMemory, InvalidInputError, JobSpec, ProgressCallback
from .mux import DEFAULT_CRF, mux_video
from .recipes import DenoiseJob, RecipeRunner, image_crf_for, recipe_spec
from .speed import NegativePromptCache


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


# The formats a user would send, as the API accepts them (server/jobs/images.py; a test keeps the two equal).
ACCEPTED_IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "AVIF", "HEIF")


def _readable_formats() -> tuple[str, ...]:
    Image.init()
    return tuple(name for name in ACCEPTED_IMAGE_FORMATS if name in Image.OPEN)


def load_image(image_path: Path, what: str = "image") -> Image.Image:
    """The decoded RGB image; ``what`` names the request field in the error a bad file raises."""
    formats = _readable_formats()
    try:
        with Image.open(image_path, formats=formats) as probe:
            probe.verify()  # catches truncated/corrupt files that open() alone accepts
        with Image.open(image_path, formats=formats) as image:
            return image.convert("RGB")
    except Exception as error:  # PIL raises many types (OSError, SyntaxError, DecompressionBombError, ...)
        raise InvalidInputError(f"{what}: cannot decode {Path(image_path).name} ({error})") from error


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
        guidance: str | GuidancePolicy = DEFAULT_GUIDANCE_POLICY,
        cache_negative_prompt: bool = True,
    ) -> None:
        if num_inference_steps < 2:
            # The LTX-2 schedule's terminal stretch needs two steps (pipelines/schedule.py).
            raise ValueError("num_inference_steps must be >= 2")
        self.pipe = bundle.pipe
        self.after_prompt = bundle.after_prompt
        self.spec = recipe_spec(recipe, num_inference_steps)
        # A name picks one of LTX-2.0's policies; a generation's own policy comes as the object itself.
        self.policy = guidance if isinstance(guidance, GuidancePolicy) else guidance_policy(guidance)
        self.runner = RecipeRunner(bundle, self.spec)
        self.user_loras = getattr(bundle, "user_loras", None)  # pipelines/loras.py LoraLibrary (--loras), or None
        self.image_crf = image_crf_for(image_crf)
        self.x264_preset = x264_preset
        self.x264_crf = x264_crf
        self.max_sequence_length = max_sequence_length
        # 0 asks for one pass: a chunk longer than any clip (a size every chunked loop can step by).
        self.decode_chunk_frames = decode_chunk_frames or ONE_PASS_FRAMES
        self.negative_prompt_cache = NegativePromptCache() if cache_negative_prompt else None
        # With VAE tiling (offloaded small GPUs) the VAE's own tiled decode bounds memory spatially too.
        self.use_vae_decode = use_vae_decode
        # What was loaded and how (set by pipelines.load_generator; shown in /ready and the start-up log).
        self.description = f"recipe {recipe}"

    @property
    def guidance_summary(self) -> str:
        if not self.spec.uses_guidance:
            return "none (the distilled recipe is unguided)"
        return self.policy.summary() + " (video cfg: the request's guidance_scale)"

    @property
    def available_loras(self) -> tuple[str, ...]:
        """The names a request's ``loras`` may use (the --loras folder's files)."""
        return () if self.user_loras is None else self.user_loras.names

    def _loras_applied(self, params: JobSpec):
        """The request's LoRAs on for its stages and off after it, whatever happens; refused when unknown."""
        if self.user_loras is not None:
            return self.user_loras.applied(params.loras)
        if params.loras:
            raise InvalidInputError("loras: this server has no LoRAs (its --loras folder is not set or empty)")
        return nullcontext()

    @property
    def _device(self) -> torch.device:
        return self.pipe._execution_device

    def generate(
        self,
        params: JobSpec,
        image_path: Path | None,
        output_path: Path,
        on_progress: ProgressCallback,
        keyframe_paths: Sequence[Path] = (),
    ) -> GenerationResult:
        try:
            with self._loras_applied(params):
                return self._generate(params, image_path, output_path, on_progress, keyframe_paths)
        except torch.cuda.OutOfMemoryError as error:
            raise GpuOutOfMemory(
                f"the GPU ran out of memory at {params.width}x{params.height}, {params.num_frames} frames "
                f"({str(error).splitlines()[0]}); try a smaller size or fewer frames, or start the server with "
                "--offload model/group"
            ) from None
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def _generate(
        self,
        params,
        image_path: Path | None,
        output_path: Path,
        on_progress: ProgressCallback,
        keyframe_paths: Sequence[Path] = (),
    ):
        clock = _StageClock()
        size = self._plan_size(params)
        with clock.stage("load_image"):
            images = self.image_conditions(params, image_path, keyframe_paths)
        policy = self.request_policy(params)

        total_steps = self.spec.total_steps
        with torch.inference_mode():
            params = self._with_enhanced_prompt(params, image_path, keyframe_paths, on_progress, clock)
            with clock.stage("encode_prompt"):
                on_progress("encoding_prompt", 0, 1)
                contexts = self._encode_prompt(params, policy)
                if self.after_prompt is not None:
                    self.after_prompt()
                on_progress("encoding_prompt", 1, 1)

            on_progress("denoising", 0, total_steps)
            job = DenoiseJob(
                images=images,
                width=size.width,
                height=size.height,
                num_frames=size.num_frames,
                fps=float(params.fps),
                policy=policy,
                contexts=contexts,
                # On the execution device, as Lightricks' pipelines draw their noise: a seed gives their noise.
                generator=torch.Generator(self._device).manual_seed(params.seed),
                on_step=lambda step: on_progress("denoising", step, total_steps),
                stage=clock.stage,
            )
            output = self.runner.run(job)
            video_latents, audio_latents = output.video, output.audio

            on_progress("decoding_audio", 0, 1)
            with clock.stage("decode_audio"):
                audio = self._decode_audio(audio_latents)
            on_progress("decoding_audio", 1, 1)
            frames = self._frame_chunks(video_latents, size)

            # The video decode runs lazily inside the mux loop (chunks are decoded as ffmpeg asks for
            # them, and streamed into it): its time is measured per chunk and moved from "mux" to
            # "decode_video". Progress reports "decoding_video" per chunk (frames decoded / total),
            # then "muxing" once the last chunk is in and only ffmpeg's finish is left.
            on_progress("decoding_video", 0, size.out_num_frames)
            with clock.stage("mux"):
                decode_clock = _StageClock()
                mux_video(
                    _reported(_timed(frames, decode_clock), size.out_num_frames, on_progress),
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
        enhanced = params.prompt if params.enhance_prompt else None
        return GenerationResult(
            output_path=Path(output_path), seed=params.seed, stage_seconds=clock.seconds, enhanced_prompt=enhanced
        )

    def image_conditions(
        self, params: JobSpec, image_path: Path | None, keyframe_paths: Sequence[Path] = ()
    ) -> list[ImageCondition]:
        """The request's images as the recipes take them: the image (if any) held at frame 0, then each
        keyframe at its output frame and strength; none is text-to-video. Frames past the request's last are
        refused: the generated clip may be longer (8k+1 frames) but is cut back to num_frames."""
        if len(keyframe_paths) != len(params.keyframes):
            raise InvalidInputError(
                f"keyframes: {len(params.keyframes)} keyframes but {len(keyframe_paths)} keyframe images"
            )
        images = []
        if image_path is not None:
            images.append(ImageCondition(self._prepared(image_path, "image"), frame=0, strength=1.0))
        for index, (keyframe, path) in enumerate(zip(params.keyframes, keyframe_paths, strict=True)):
            if not 0 <= keyframe.frame < params.num_frames:
                raise InvalidInputError(
                    f"keyframes[{index}].frame: {keyframe.frame} is outside 0..{params.num_frames - 1} (num_frames)"
                )
            if not 0.0 <= keyframe.strength <= 1.0:
                raise InvalidInputError(f"keyframes[{index}].strength: {keyframe.strength} is outside 0..1")
            pixels = self._prepared(path, f"keyframes[{index}].image")
            images.append(ImageCondition(pixels, frame=keyframe.frame, strength=keyframe.strength))
        return images

    def _with_enhanced_prompt(
        self,
        params: JobSpec,
        image_path: Path | None,
        keyframe_paths: Sequence[Path],
        on_progress: ProgressCallback,
        clock: _StageClock,
    ) -> JobSpec:
        """``params`` with the prompt Gemma rewrote when the request asks for enhance_prompt (pipelines/enhance.py),
        looking at the video's first frame when the request gives one (the image, or a keyframe at frame 0)."""
        if not params.enhance_prompt:
            return params
        first_frames = [image_path] if image_path is not None else []
        first_frames += [path for key, path in zip(params.keyframes, keyframe_paths, strict=True) if key.frame == 0]
        with clock.stage("enhance_prompt"):
            on_progress("enhancing_prompt", 0, 1)
            enhancer = PromptEnhancer.for_pipe(self.pipe, self._device)
            image = load_image(first_frames[0], "image") if first_frames else None
            prompt = enhancer.enhance(params.prompt, image, params.seed)
            on_progress("enhancing_prompt", 1, 1)
        return replace(params, prompt=prompt)

    def _prepared(self, path: Path, what: str) -> torch.Tensor:
        return compressed_like_training(load_image(path, what), self.image_crf)

    def _plan_size(self, params: JobSpec) -> GenerationSize:
        """The size generated for ``params`` (a generation with a larger minimum raises it)."""
        return plan_generation_size(
            params.width,
            params.height,
            params.num_frames,
            spatial_multiple=self.pipe.vae_spatial_compression_ratio * self.spec.spatial_factor,
            temporal_ratio=self.pipe.vae_temporal_compression_ratio,
        )

    def request_policy(self, params: JobSpec):
        return self.policy.for_request(params.guidance_scale, guided=self.spec.uses_guidance)

    def _encode_prompt(self, params: JobSpec, policy) -> Contexts:
        """Gemma, then the connectors, one prompt at a time (as Lightricks' pipelines do); the negative
        prompt only when a guided stage will use it, from the cache when it was encoded before."""
        video, audio = self._encode_one(params.prompt)
        if not policy.uses_negative_prompt:
            return Contexts(video=video, audio=audio)
        negative = params.negative_prompt or ""  # what diffusers' encode_prompt encodes for no negative prompt
        if self.negative_prompt_cache is None:
            negative_video, negative_audio = self._encode_one(negative)
        else:
            key = (negative, self.max_sequence_length, str(self._device), str(self.pipe.text_encoder.dtype))
            negative_video, negative_audio = self.negative_prompt_cache.get_or_encode(
                key, lambda: self._encode_one(negative)
            )
        return Contexts(video=video, audio=audio, negative_video=negative_video, negative_audio=negative_audio)

    def _encode_one(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        hidden_states, mask, _, _ = self.pipe.encode_prompt(
            prompt=prompt,
            do_classifier_free_guidance=False,
            max_sequence_length=self.max_sequence_length,
            device=self._device,
        )
        return self._connect(hidden_states, mask)

    def _connect(self, hidden_states: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        padding_side = getattr(self.pipe.tokenizer, "padding_side", "left")
        video, audio, _mask = self.pipe.connectors(hidden_states, mask, padding_side=padding_side)
        return video, audio

    def _decode_audio(self, audio_latents: torch.Tensor) -> np.ndarray:
        return decode_waveform(self.pipe, audio_latents)

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


def decode_waveform(pipe, audio_latents: torch.Tensor) -> np.ndarray:
    """Un-normalised audio latents [1, C, L, M] -> [channels, samples] float waveform at the vocoder's rate."""
    audio_vae = pipe.audio_vae
    mel = audio_vae.decode(audio_latents.to(audio_vae.dtype), return_dict=False)[0]
    waveform = pipe.vocoder(mel.to(pipe.vocoder.dtype))
    return waveform[0].float().cpu().numpy()


def _timed(chunks: Iterator[np.ndarray], clock: _StageClock) -> Iterator[np.ndarray]:
    iterator = iter(chunks)
    while True:
        with clock.stage("chunk"):
            chunk = next(iterator, None)
        if chunk is None:
            return
        yield chunk


def _reported(chunks: Iterator[np.ndarray], total_frames: int, on_progress: ProgressCallback) -> Iterator[np.ndarray]:
    """Reports ("decoding_video", frames decoded, total) after each chunk, then ("muxing", 0, 1) once
    the last frame is decoded (ffmpeg then only finishes encoding)."""
    decoded = 0
    for chunk in chunks:
        decoded = min(total_frames, decoded + int(chunk.shape[0]))
        on_progress("decoding_video", decoded, total_frames)
        if decoded >= total_frames:
            on_progress("muxing", 0, 1)
        yield chunk
    if decoded < total_frames:
        on_progress("muxing", 0, 1)
