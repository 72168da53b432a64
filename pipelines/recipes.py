"""The three ways of turning (image, prompt) into video and audio latents at the requested size.

- ``one-stage``: the full resolution, ``steps`` denoising steps with CFG.
- ``two-stage`` (Lightricks' recommended recipe, the default): stage 1 at half resolution with CFG,
  the 2x latent upsampler, then 3 steps at full resolution with the distilled LoRA and no guidance,
  re-noised to the first stage-2 sigma. The conditioning image is encoded again at full resolution for
  stage 2, as Lightricks' pipeline does, so the first frame keeps full detail.
- ``distilled``: stage 1 uses the distilled LoRA too, with its 8 fixed sigmas and no guidance; then as
  two-stage. The fastest; guidance_scale and negative_prompt are ignored.

Guidance is LTX-2.0's: CFG only (no STG or modality passes, which do nothing for 2.0 weights but cost
a transformer forward each), and no forward spent on a negative prompt when guidance is off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from diffusers.pipelines.ltx2.utils import (
    DISTILLED_SIGMA_VALUES,
    STAGE_2_DISTILLED_SIGMA_VALUES,
    apply_image_conditioning_crf,
    resolve_default_image_crf,
)
from PIL import Image

from .schedule import BoundedShiftScheduler

RECIPES = ("two-stage", "one-stage", "distilled")

_GUIDANCE_2_0 = dict(
    stg_scale=0.0,
    audio_stg_scale=0.0,
    modality_scale=1.0,
    audio_modality_scale=1.0,
    use_cross_timestep=False,
)


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
    stage2 = len(STAGE_2_DISTILLED_SIGMA_VALUES)
    if name == "one-stage":
        return RecipeSpec(name, 0, steps, uses_guidance=True, two_stage=False)
    if name == "two-stage":
        return RecipeSpec(name, steps, stage2, uses_guidance=True, two_stage=True)
    if name == "distilled":
        return RecipeSpec(name, len(DISTILLED_SIGMA_VALUES), stage2, uses_guidance=False, two_stage=True)
    raise ValueError(f"recipe: must be one of {', '.join(RECIPES)}; got {name!r}")


@dataclass
class DenoiseJob:
    """One request's inputs to a recipe. Sizes are the generated (snapped) ones, full resolution."""

    image: Image.Image  # already cover-cropped to width x height
    width: int
    height: int
    num_frames: int
    fps: int
    guidance_scale: float
    embeds: dict  # prompt_embeds/mask, plus negative ones when guidance is on
    generator: torch.Generator
    on_step: Callable[[int], None]  # called with the cumulative step count across stages
    stage: Callable  # stage(name) -> context manager that times a stage


class RecipeRunner:
    """Runs a recipe on a loaded bundle. Holds the fixed-sigma scheduler so none is built per request."""

    def __init__(self, bundle, spec: RecipeSpec, *, max_sequence_length: int, image_crf: int | None) -> None:
        self.pipe = bundle.pipe
        self.latent_upsampler = bundle.latent_upsampler
        self.adapter = bundle.distilled_adapter
        self.spec = spec
        self.max_sequence_length = max_sequence_length
        self.image_crf = image_crf
        if spec.two_stage and (self.latent_upsampler is None or self.adapter is None):
            raise ValueError(f"recipe {spec.name!r} needs the latent upsampler and the distilled LoRA")
        self.dynamic_scheduler = self.pipe.scheduler
        # Distilled sigmas are used as they are: no resolution shift, no terminal stretch.
        self.fixed_scheduler = BoundedShiftScheduler.from_config(
            self.pipe.scheduler.config, use_dynamic_shifting=False, shift_terminal=None
        )

    def run(self, job: DenoiseJob) -> tuple[torch.Tensor, torch.Tensor]:
        spec = self.spec
        if not spec.two_stage:
            with job.stage("denoise"):
                return self._denoise(job, job.image, job.width, job.height, steps=spec.final_steps, first_step=0)
        half_w, half_h = job.width // 2, job.height // 2
        with job.stage("stage1"):
            small_image = job.image.resize((half_w, half_h), Image.Resampling.BICUBIC)
            if spec.name == "distilled":
                video, audio = self._denoise(
                    job, small_image, half_w, half_h, sigmas=DISTILLED_SIGMA_VALUES, lora=True, first_step=0
                )
            else:
                video, audio = self._denoise(job, small_image, half_w, half_h, steps=spec.stage1_steps, first_step=0)
        with job.stage("upsample"):
            video = self._upsample(video)
            video[:, :, :1] = self._image_latent(job.image, job.width, job.height).to(video.dtype)
        with job.stage("stage2"):
            return self._denoise(
                job,
                job.image,
                job.width,
                job.height,
                sigmas=STAGE_2_DISTILLED_SIGMA_VALUES,
                lora=True,
                first_step=spec.stage1_steps,
                latents=video,
                audio_latents=audio,
            )

    def _denoise(
        self,
        job: DenoiseJob,
        image: Image.Image,
        width: int,
        height: int,
        *,
        first_step: int,
        steps: int | None = None,
        sigmas: list[float] | None = None,
        lora: bool = False,
        latents: torch.Tensor | None = None,
        audio_latents: torch.Tensor | None = None,
    ):
        guided = sigmas is None and self.spec.uses_guidance and job.guidance_scale > 1.0
        embeds = job.embeds if guided else _positive_only(job.embeds)

        def report_step(pipe, step: int, timestep, callback_kwargs: dict) -> dict:
            job.on_step(first_step + step + 1)  # may raise to cancel: let it propagate
            return callback_kwargs

        renoise = {} if latents is None else {"latents": latents, "noise_scale": sigmas[0]}
        if audio_latents is not None:
            renoise["audio_latents"] = audio_latents
        self.pipe.scheduler = self.dynamic_scheduler if sigmas is None else self.fixed_scheduler
        self._set_lora(lora)
        try:
            output = self.pipe(
                image=image,
                **embeds,
                height=height,
                width=width,
                num_frames=job.num_frames,
                frame_rate=float(job.fps),
                num_inference_steps=len(sigmas) if sigmas is not None else steps,
                sigmas=sigmas,
                guidance_scale=job.guidance_scale if guided else 1.0,
                **_GUIDANCE_2_0,
                **renoise,
                generator=job.generator,
                image_crf=self.image_crf,
                max_sequence_length=self.max_sequence_length,
                output_type="latent",
                callback_on_step_end=report_step,
            )
        finally:
            self.pipe.scheduler = self.dynamic_scheduler
            self._set_lora(False)
        return output.frames, output.audio

    def _set_lora(self, enabled: bool) -> None:
        if self.adapter is None:
            return
        if enabled:
            self.pipe.enable_lora()
        else:
            self.pipe.disable_lora()

    def _upsample(self, latents: torch.Tensor) -> torch.Tensor:
        upsampler = self.latent_upsampler
        device = next(upsampler.parameters()).device
        upsampled = upsampler(latents.to(device=device, dtype=upsampler.dtype))
        return upsampled.to(latents.device, torch.float32)

    def _image_latent(self, image: Image.Image, width: int, height: int) -> torch.Tensor:
        """The conditioning image at full resolution as an un-normalised video latent [1, C, 1, h, w]."""
        pipe = self.pipe
        crf = self.image_crf if self.image_crf is not None else resolve_default_image_crf(pipe.text_encoder)
        if crf:
            image = Image.fromarray(apply_image_conditioning_crf(np.array(image.convert("RGB")), crf))
        pixels = pipe.video_processor.preprocess(image, height=height, width=width)
        pixels = pixels.to(device=pipe._execution_device, dtype=pipe.vae.dtype).unsqueeze(2)
        return pipe.vae.encode(pixels).latent_dist.mode()


def _positive_only(embeds: dict) -> dict:
    return {key: value for key, value in embeds.items() if not key.startswith("negative_")}
