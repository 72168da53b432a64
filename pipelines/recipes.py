"""The three ways of turning (image, prompt) into video and audio latents, as Lightricks' pipelines do
(ltx-pipelines 1.0.0: ``TI2VidTwoStagesPipeline``, ``TI2VidOneStagePipeline``, ``DistilledPipeline``).

- ``two-stage`` (the default): stage 1 at half resolution, ``steps`` guided steps on the LTX-2 schedule;
  the 2x latent upsampler; stage 2 at full resolution: the image latent put back on frame 0, re-noised to
  the first stage-2 sigma, 3 unguided steps with the distilled LoRA. Audio carries over from stage 1.
- ``one-stage``: ``steps`` guided steps at full resolution.
- ``distilled``: as two-stage, but stage 1 runs 8 fixed sigmas unguided, and both stages run the
  distilled transformer (Lightricks' distilled checkpoint when the weights folder has it, otherwise the
  base model with the distilled LoRA). guidance_scale and negative_prompt are not used.

Unguided stages run one transformer pass per step at batch 1 and never encode a negative prompt.

Conditioning (ltx-pipelines' ``combined_image_conditionings``), rebuilt at each stage's size: no image is
text-to-video (every token denoised); an image at frame 0 replaces latent frame 0; an image at a later frame is
a keyframe: its latent's tokens are appended to the video's, placed in time at that frame by their RoPE
coordinates, and dropped again once the stage is denoised. Either kind is denoised by 1 - strength.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, Sequence

import torch

from .conditioning import DEFAULT_IMAGE_CRF, ImageCondition, cover_and_crop
from .denoise import Contexts, Geometry, LatentState, Passes, StageDenoiser
from .guidance import GuidancePolicy
from .schedule import DISTILLED_SIGMAS, STAGE_2_SIGMAS, fixed_sigmas, ltx2_sigmas

RECIPES = ("two-stage", "one-stage", "distilled")


@dataclass(frozen=True)
class RecipeSpec:
    name: str
    stage1_steps: int  # 0: this recipe has no separate stage 1 (one-stage)
    final_steps: int
    uses_guidance: bool
    two_stage: bool

    @property
    def total_steps(self) -> int:
        return self.stage1_steps + self.final_steps

    @property
    def spatial_factor(self) -> int:
        """How many VAE compression units a requested size must be a multiple of."""
        return 2 if self.two_stage else 1


def recipe_spec(name: str, steps: int) -> RecipeSpec:
    stage2 = len(STAGE_2_SIGMAS) - 1
    if name == "one-stage":
        return RecipeSpec(name, 0, steps, uses_guidance=True, two_stage=False)
    if name == "two-stage":
        return RecipeSpec(name, steps, stage2, uses_guidance=True, two_stage=True)
    if name == "distilled":
        return RecipeSpec(name, len(DISTILLED_SIGMAS) - 1, stage2, uses_guidance=False, two_stage=True)
    raise ValueError(f"recipe: must be one of {', '.join(RECIPES)}; got {name!r}")


@contextmanager
def _no_timing() -> Iterator[None]:
    yield


@dataclass
class DenoiseJob:
    """One request's inputs to a recipe. Sizes are the generated (snapped) ones, full resolution."""

    images: Sequence[ImageCondition]  # none: text-to-video
    width: int
    height: int
    num_frames: int
    fps: float
    policy: GuidancePolicy  # the request's guidance (its guidance_scale applied)
    contexts: Contexts
    generator: torch.Generator
    on_step: Callable[[int], None]  # called with the cumulative step count across stages
    stage: Callable = field(default=lambda name: _no_timing())  # stage(name) -> context manager timing it


@dataclass(frozen=True)
class RecipeOutput:
    video: torch.Tensor  # [1, C, F, H, W] un-normalised video latents, ready for the VAE decoder
    audio: torch.Tensor  # [1, C, L, M] un-normalised audio latents, ready for the audio VAE decoder
    passes: tuple[Passes, ...]  # per stage


class RecipeRunner:
    """Runs a recipe on a loaded bundle (pipelines/loader.py LTX2Bundle)."""

    def __init__(self, bundle, spec: RecipeSpec) -> None:
        self.pipe = bundle.pipe
        self.latent_upsampler = bundle.latent_upsampler
        self.adapter = bundle.distilled_adapter
        self.distilled_transformer = getattr(bundle, "distilled_transformer", None)
        self.user_loras = getattr(bundle, "user_loras", None)  # pipelines/loras.py LoraLibrary, or None
        self.spec = spec
        if spec.two_stage and self.latent_upsampler is None:
            raise ValueError(f"recipe {spec.name!r} needs the latent upsampler")
        if spec.two_stage and self.adapter is None and self.distilled_transformer is None:
            raise ValueError(f"recipe {spec.name!r} needs the distilled LoRA or the distilled checkpoint")

    def run(self, job: DenoiseJob) -> RecipeOutput:
        spec = self.spec
        if not spec.two_stage:
            with job.stage("denoise"):
                video, audio, passes = self._stage(
                    job, job.width, job.height, ltx2_sigmas(spec.final_steps), job.policy, first_step=0
                )
            return RecipeOutput(self._video_out(video, job, job.width, job.height), self._audio_out(audio), (passes,))
        half_w, half_h = job.width // 2, job.height // 2
        with job.stage("stage1"):
            if spec.name == "distilled":
                sigmas, policy = fixed_sigmas(DISTILLED_SIGMAS), job.policy.unguided()
            else:
                sigmas, policy = ltx2_sigmas(spec.stage1_steps), job.policy
            video, audio, passes1 = self._stage(job, half_w, half_h, sigmas, policy, first_step=0)
        with job.stage("upsample"):
            upsampled = self._upsample(self._unpack_video(video.latent, job, half_w, half_h))
        with job.stage("stage2"):
            video, audio, passes2 = self._stage(
                job,
                job.width,
                job.height,
                fixed_sigmas(STAGE_2_SIGMAS),
                job.policy.unguided(),
                first_step=spec.stage1_steps,
                video_start=upsampled,
                audio_start=audio.latent,
                distilled=True,
            )
        return RecipeOutput(
            self._video_out(video, job, job.width, job.height), self._audio_out(audio), (passes1, passes2)
        )

    # -- one stage -------------------------------------------------------------------------------------

    def _stage(
        self,
        job: DenoiseJob,
        width: int,
        height: int,
        sigmas: torch.Tensor,
        policy: GuidancePolicy,
        *,
        first_step: int,
        video_start: torch.Tensor | None = None,
        audio_start: torch.Tensor | None = None,
        distilled: bool = False,
    ) -> tuple[LatentState, LatentState, Passes]:
        distilled = distilled or self.spec.name == "distilled"
        noise_scale = float(sigmas[0]) if video_start is not None else 1.0
        geometry = self._geometry(job, width, height)
        video, geometry = self._conditioned_video(geometry, job.images, width, height, video_start)
        # Noise after conditioning, over the appended keyframe tokens too, as the reference draws it.
        video = video.noised(job.generator, noise_scale)
        audio = self._audio_state(geometry, audio_start, video.latent.dtype).noised(job.generator, noise_scale)
        with self._distilled_weights(distilled) as transformer:
            denoiser = StageDenoiser(transformer, policy, geometry, job.contexts)
            video, audio = denoiser.run(video, audio, sigmas, lambda step: job.on_step(first_step + step))
        return _without_keyframes(video, geometry), audio, denoiser.passes

    @contextmanager
    def _distilled_weights(self, enabled: bool) -> Iterator[object]:
        """The transformer for a stage: the distilled checkpoint, the base model with the distilled LoRA
        switched on for the stage, or the base model; with the request's own LoRAs on, if it asked for any."""
        if self.user_loras is not None and self.user_loras.requested:
            with self._with_user_loras(self.user_loras, enabled) as transformer:
                yield transformer
            return
        if enabled and self.distilled_transformer is not None:
            yield self.distilled_transformer
            return
        if not enabled or self.adapter is None:
            yield self.pipe.transformer
            return
        self.pipe.enable_lora()
        try:
            yield self.pipe.transformer
        finally:
            self.pipe.disable_lora()

    def _with_user_loras(self, loras, distilled: bool):
        """The stage's transformer with the request's LoRAs on (pipelines/loras.py LoraLibrary); a stage that
        runs the distilled LoRA as an adapter runs it beside them, as Lightricks' stage 2 fuses both."""
        if distilled and self.distilled_transformer is not None:
            return loras.stage(self.distilled_transformer, None)
        return loras.stage(self.pipe.transformer, self.adapter if distilled else None)

    # -- latents ---------------------------------------------------------------------------------------

    def _geometry(self, job: DenoiseJob, width: int, height: int) -> Geometry:
        pipe = self.pipe
        transformer = pipe.transformer
        frames = (job.num_frames - 1) // pipe.vae_temporal_compression_ratio + 1
        latent_h = height // pipe.vae_spatial_compression_ratio
        latent_w = width // pipe.vae_spatial_compression_ratio
        audio_frames = round(job.num_frames / job.fps * self._audio_latents_per_second())
        device = pipe._execution_device
        return Geometry(
            video_coords=transformer.rope.prepare_video_coords(1, frames, latent_h, latent_w, device, fps=job.fps),
            audio_coords=transformer.audio_rope.prepare_audio_coords(1, audio_frames, device),
            frames=frames,
            height=latent_h,
            width=latent_w,
            audio_frames=audio_frames,
            fps=job.fps,
        )

    def _audio_latents_per_second(self) -> float:
        pipe = self.pipe
        return pipe.audio_sampling_rate / pipe.audio_hop_length / float(pipe.audio_vae_temporal_compression_ratio)

    def _state_dtype(self) -> torch.dtype:
        return self.pipe.vae.dtype

    def _video_state(self, geometry: Geometry, start: torch.Tensor | None) -> LatentState:
        """Tokens of the stage's starting latent (zeros, or the upsampled stage-1 latent), all to be denoised.

        The mask is float32 whatever the state's dtype, as the reference keeps it: the noise weights, timesteps
        and clean blends it scales are then computed as the reference computes them.
        """
        vae = self.pipe.vae
        shape = (1, vae.config.latent_channels, geometry.frames, geometry.height, geometry.width)
        device, dtype = self.pipe._execution_device, self._state_dtype()
        latent = torch.zeros(shape, device=device, dtype=dtype) if start is None else start.to(device, dtype)
        tokens = _pack_video(latent.clone())
        mask = torch.ones((1, tokens.shape[1], 1), device=device, dtype=torch.float32)
        return LatentState(latent=tokens, clean=tokens.clone(), mask=mask)

    def _conditioned_video(
        self,
        geometry: Geometry,
        images: Sequence[ImageCondition],
        width: int,
        height: int,
        start: torch.Tensor | None,
    ) -> tuple[LatentState, Geometry]:
        """The stage's video state with each image applied in order, and the geometry covering every token
        (the video's, then the keyframes' appended ones)."""
        state = self._video_state(geometry, start)
        coords = [geometry.video_coords]
        for image in images:
            tokens = _pack_video(self._image_latent(image.pixels, width, height).to(state.latent.dtype))
            if image.frame == 0:
                state = _replace_first_frame(state, tokens, image.strength)
            else:
                state = _append_keyframe(state, tokens, image.strength)
                coords.append(self._keyframe_coords(geometry, image.frame))
        return state, replace(geometry, video_coords=torch.cat(coords, dim=2))

    def _keyframe_coords(self, geometry: Geometry, frame: int) -> torch.Tensor:
        """RoPE bounds [1, 3, h*w, 2] of a keyframe's one latent frame placed at output pixel frame ``frame``:
        spatially those of any latent frame; in time [frame, frame + temporal scale) / fps, without the causal
        shift of the video's first frame (ltx-core's VideoConditionByKeyframeIndex)."""
        rope = self.pipe.transformer.rope
        coords = rope.prepare_video_coords(
            1, 1, geometry.height, geometry.width, geometry.video_coords.device, fps=geometry.fps
        )
        # Built in float32 and divided there, as the reference does, so the times agree to the bit.
        span = torch.tensor([frame, frame + rope.scale_factors[0] * rope.patch_size_t], dtype=torch.float32)
        coords[:, 0] = (span / geometry.fps).to(coords.device, coords.dtype)
        return coords

    def _audio_state(self, geometry: Geometry, start: torch.Tensor | None, dtype: torch.dtype) -> LatentState:
        audio_vae = self.pipe.audio_vae
        latent_mel_bins = audio_vae.config.mel_bins // self.pipe.audio_vae_mel_compression_ratio
        device = self.pipe._execution_device
        shape = (1, geometry.audio_frames, audio_vae.config.latent_channels * latent_mel_bins)
        latent = torch.zeros(shape, device=device, dtype=dtype) if start is None else start.to(device, dtype).clone()
        # Audio has no conditioning; float32 as the video's mask (_video_state).
        mask = torch.ones((1, shape[1], 1), device=device, dtype=torch.float32)
        return LatentState(latent=latent, clean=latent.clone(), mask=mask)

    def _image_latent(self, pixels: torch.Tensor, width: int, height: int) -> torch.Tensor:
        """The conditioning image at this stage's size as a normalised latent frame [1, C, 1, h, w]."""
        vae = self.pipe.vae
        image = cover_and_crop(pixels, height, width).to(self.pipe._execution_device, vae.dtype)
        latent = vae.encode(image).latent_dist.mode()
        return _normalize(latent, vae.latents_mean, vae.latents_std)

    def _upsample(self, latent: torch.Tensor) -> torch.Tensor:
        """The 2x latent upsampler works on un-normalised latents."""
        vae, upsampler = self.pipe.vae, self.latent_upsampler
        device = next(upsampler.parameters()).device
        raw = _denormalize(latent, vae.latents_mean, vae.latents_std)
        upsampled = upsampler(raw.to(device=device, dtype=upsampler.dtype)).to(latent.device, latent.dtype)
        return _normalize(upsampled, vae.latents_mean, vae.latents_std)

    def _unpack_video(self, tokens: torch.Tensor, job: DenoiseJob, width: int, height: int) -> torch.Tensor:
        pipe = self.pipe
        frames = (job.num_frames - 1) // pipe.vae_temporal_compression_ratio + 1
        latent_h, latent_w = height // pipe.vae_spatial_compression_ratio, width // pipe.vae_spatial_compression_ratio
        return tokens.reshape(tokens.shape[0], frames, latent_h, latent_w, -1).permute(0, 4, 1, 2, 3)

    def _video_out(self, state: LatentState, job: DenoiseJob, width: int, height: int) -> torch.Tensor:
        vae = self.pipe.vae
        return _denormalize(self._unpack_video(state.latent, job, width, height), vae.latents_mean, vae.latents_std)

    def _audio_out(self, state: LatentState) -> torch.Tensor:
        audio_vae = self.pipe.audio_vae
        mean = audio_vae.latents_mean.to(state.latent.device, state.latent.dtype)
        std = audio_vae.latents_std.to(state.latent.device, state.latent.dtype)
        raw = state.latent * std + mean
        latent_mel_bins = audio_vae.config.mel_bins // self.pipe.audio_vae_mel_compression_ratio
        return raw.unflatten(2, (-1, latent_mel_bins)).transpose(1, 2)  # [B, L, C*M] -> [B, C, L, M]


def _replace_first_frame(state: LatentState, tokens: torch.Tensor, strength: float) -> LatentState:
    """The first latent frame's tokens set to ``tokens`` (start and clean value), denoised by 1 - strength."""
    count = tokens.shape[1]
    latent, clean, mask = state.latent.clone(), state.clean.clone(), state.mask.clone()
    latent[:, :count] = tokens
    clean[:, :count] = tokens
    mask[:, :count] = 1.0 - strength
    return LatentState(latent=latent, clean=clean, mask=mask)


def _append_keyframe(state: LatentState, tokens: torch.Tensor, strength: float) -> LatentState:
    # The reference makes this mask in the tokens' dtype before joining it to the float32 one.
    mask = torch.full((*tokens.shape[:2], 1), 1.0 - strength, device=tokens.device, dtype=tokens.dtype)
    return LatentState(
        latent=torch.cat([state.latent, tokens], dim=1),
        clean=torch.cat([state.clean, tokens], dim=1),
        mask=torch.cat([state.mask, mask.to(state.mask.dtype)], dim=1),
    )


def _without_keyframes(state: LatentState, geometry: Geometry) -> LatentState:
    """The video's own tokens, the appended keyframes dropped (ltx-core's clear_conditioning)."""
    count = geometry.frames * geometry.height * geometry.width
    return LatentState(latent=state.latent[:, :count], clean=state.clean[:, :count], mask=state.mask[:, :count])


def _pack_video(latent: torch.Tensor) -> torch.Tensor:
    """[B, C, F, H, W] -> [B, F*H*W, C] (LTX-2's patch size is 1)."""
    return latent.flatten(2).transpose(1, 2)


def _channel_stats(stats: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return stats.view(1, -1, 1, 1, 1).to(like.device, like.dtype)


def _normalize(latent: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (latent - _channel_stats(mean, latent)) / _channel_stats(std, latent)


def _denormalize(latent: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return latent * _channel_stats(std, latent) + _channel_stats(mean, latent)


def image_crf_for(configured: int | None) -> int:
    return DEFAULT_IMAGE_CRF if configured is None else configured
