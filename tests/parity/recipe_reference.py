"""Lightricks' recipes, composed from ltx-pipelines 1.0.0's own building blocks exactly as its pipeline
classes compose them (``TI2VidTwoStagesPipeline``, ``TI2VidOneStagePipeline``, ``DistilledPipeline``), on the
tiny reference models of tests/parity/twins.py.

Only two things differ from the classes' ``__call__``: the dtype is float32 (they hard-code bfloat16, which
would hide any real divergence under rounding), and models come from the twins instead of a checkpoint
ledger. Every function called below (noise, conditioning, schedule, guidance, Euler loop, upsampler) is the
reference's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import tests.parity.reference  # noqa: F401  (makes ltx_core importable without torchaudio)
from tests.parity.twins import AUDIO_LATENT_CHANNELS, AUDIO_LATENT_MEL_BINS, Reference

CPU = torch.device("cpu")
DTYPE = torch.float32


@dataclass(frozen=True)
class ReferenceInputs:
    image_path: str
    video_context: torch.Tensor
    audio_context: torch.Tensor
    negative_video_context: torch.Tensor
    negative_audio_context: torch.Tensor
    seed: int
    width: int
    height: int
    num_frames: int
    fps: float
    steps: int
    video_params: object  # MultiModalGuiderParams
    audio_params: object
    # (path, frame_idx, strength) per conditioning image, as ImageConditioningInput takes them; None: the image at
    # frame 0, strength 1 (image-to-video); empty: text-to-video.
    images: tuple[tuple[str, int, float], ...] | None = None


@dataclass(frozen=True)
class ReferenceOutput:
    video: torch.Tensor  # normalised latents [1, C, F, H, W], as the reference's decoders take them
    audio: torch.Tensor  # normalised latents [1, C, L, M]


def tiny_audio_shape(monkeypatch) -> None:
    """The reference sizes audio latents with the real model's 8 channels x 16 mel bins as defaults; the twins'
    audio VAE has fewer channels, so the same formula runs with the twins' numbers."""
    from ltx_core import types

    real = types.AudioLatentShape.from_video_pixel_shape

    def tiny(shape, channels=AUDIO_LATENT_CHANNELS, mel_bins=AUDIO_LATENT_MEL_BINS, **kwargs):
        return real(shape, channels=channels, mel_bins=mel_bins, **kwargs)

    monkeypatch.setattr(types.AudioLatentShape, "from_video_pixel_shape", staticmethod(tiny))


def run_reference(recipe: str, ref: Reference, inputs: ReferenceInputs, distilled_model=None) -> ReferenceOutput:
    """``recipe`` as Lightricks' pipeline runs it. ``distilled_model``: the X0Model the distilled recipe runs
    (the distilled checkpoint); the two-stage recipe's stage 2 runs ``ref.transformer_lora``."""
    from ltx_core.components.diffusion_steps import EulerDiffusionStep
    from ltx_core.components.noisers import GaussianNoiser
    from ltx_core.components.schedulers import LTX2Scheduler
    from ltx_core.model.upsampler import upsample_video
    from ltx_core.types import VideoPixelShape
    from ltx_pipelines.utils.constants import DISTILLED_SIGMA_VALUES, STAGE_2_DISTILLED_SIGMA_VALUES

    generator = torch.Generator(device=CPU).manual_seed(inputs.seed)
    noiser = GaussianNoiser(generator=generator)
    stepper = EulerDiffusionStep()
    full = VideoPixelShape(batch=1, frames=inputs.num_frames, width=inputs.width, height=inputs.height, fps=inputs.fps)
    with torch.no_grad():
        if recipe == "one-stage":
            sigmas = LTX2Scheduler().execute(steps=inputs.steps).to(dtype=torch.float32, device=CPU)
            video, audio = _denoise(ref, inputs, full, noiser, stepper, sigmas, _guided(ref.transformer, inputs))
            return ReferenceOutput(video.latent, audio.latent)

        half = VideoPixelShape(
            batch=1, frames=inputs.num_frames, width=inputs.width // 2, height=inputs.height // 2, fps=inputs.fps
        )
        if recipe == "two-stage":
            sigmas = LTX2Scheduler().execute(steps=inputs.steps).to(dtype=torch.float32, device=CPU)
            stage1_fn, stage2_model = _guided(ref.transformer, inputs), ref.transformer_lora
        elif recipe == "distilled":
            sigmas = torch.Tensor(DISTILLED_SIGMA_VALUES).to(CPU)
            stage1_fn, stage2_model = _simple(distilled_model, inputs), distilled_model
        else:
            raise ValueError(recipe)
        video, audio = _denoise(ref, inputs, half, noiser, stepper, sigmas, stage1_fn)
        upscaled = upsample_video(latent=video.latent[:1], video_encoder=ref.video_encoder, upsampler=ref.upsampler)
        stage2_sigmas = torch.Tensor(STAGE_2_DISTILLED_SIGMA_VALUES).to(CPU)
        video, audio = _denoise(
            ref,
            inputs,
            full,
            noiser,
            stepper,
            stage2_sigmas,
            _simple(stage2_model, inputs),
            noise_scale=stage2_sigmas[0],
            initial_video_latent=upscaled,
            initial_audio_latent=audio.latent,
        )
        return ReferenceOutput(video.latent, audio.latent)


def _guided(transformer, inputs: ReferenceInputs):
    from ltx_core.components.guiders import create_multimodal_guider_factory
    from ltx_pipelines.utils.helpers import multi_modal_guider_factory_denoising_func

    return multi_modal_guider_factory_denoising_func(
        video_guider_factory=create_multimodal_guider_factory(
            params=inputs.video_params, negative_context=inputs.negative_video_context
        ),
        audio_guider_factory=create_multimodal_guider_factory(
            params=inputs.audio_params, negative_context=inputs.negative_audio_context
        ),
        v_context=inputs.video_context,
        a_context=inputs.audio_context,
        transformer=transformer,
    )


def _simple(transformer, inputs: ReferenceInputs):
    from ltx_pipelines.utils.helpers import simple_denoising_func

    return simple_denoising_func(
        video_context=inputs.video_context, audio_context=inputs.audio_context, transformer=transformer
    )


def _denoise(ref: Reference, inputs: ReferenceInputs, shape, noiser, stepper, sigmas, denoise_fn, **initial):
    from ltx_pipelines.utils.args import ImageConditioningInput
    from ltx_pipelines.utils.helpers import combined_image_conditionings, denoise_audio_video
    from ltx_pipelines.utils.samplers import euler_denoising_loop

    images = ((inputs.image_path, 0, 1.0),) if inputs.images is None else inputs.images
    conditionings = combined_image_conditionings(
        images=[ImageConditioningInput(path, frame, strength) for path, frame, strength in images],
        height=shape.height,
        width=shape.width,
        video_encoder=ref.video_encoder,
        dtype=DTYPE,
        device=CPU,
    )

    def loop(sigmas, video_state, audio_state, stepper):
        return euler_denoising_loop(
            sigmas=sigmas, video_state=video_state, audio_state=audio_state, stepper=stepper, denoise_fn=denoise_fn
        )

    return denoise_audio_video(
        output_shape=shape,
        conditionings=conditionings,
        noiser=noiser,
        sigmas=sigmas,
        stepper=stepper,
        denoising_loop_fn=loop,
        components=ref.components,
        dtype=DTYPE,
        device=CPU,
        **initial,
    )
