"""One request's first-stage inputs on a loaded generator, to time or compare a single transformer pass (a whole
request compiles several graphs: minutes on a small CPU)."""

from __future__ import annotations

import numpy as np
import torch

from pipelines.conditioning import ImageCondition
from pipelines.denoise import StageDenoiser
from pipelines.interface import JobSpec
from pipelines.recipes import DenoiseJob


def one_stage_inputs(generator, request: JobSpec, size: int = 64):
    """(denoiser, video state, audio state, contexts) of ``request``'s first stage at ``size`` x ``size``."""
    policy = generator.request_policy(request)
    contexts = generator._encode_prompt(request, policy)
    pixels = torch.from_numpy(np.random.RandomState(0).randint(0, 255, (size, size, 3), dtype=np.uint8))
    job = DenoiseJob(
        images=[ImageCondition(pixels)],
        width=size,
        height=size,
        num_frames=9,
        fps=24.0,
        policy=policy,
        contexts=contexts,
        generator=torch.Generator(generator._device).manual_seed(0),
        on_step=lambda step: None,
    )
    runner = generator.runner
    geometry = runner._geometry(job, size, size)
    video, geometry = runner._conditioned_video(geometry, job.images, size, size, None)
    video = video.noised(job.generator, 1.0)
    audio = runner._audio_state(geometry, None, video.latent.dtype).noised(job.generator, 1.0)
    denoiser = StageDenoiser(generator.pipe.transformer, policy, geometry, contexts)
    return denoiser, video, audio, contexts


def prompt_pass(denoiser, video, audio, contexts, sigma: float = 0.7) -> tuple[torch.Tensor, torch.Tensor]:
    """The prompt pass's (video, audio) x0 estimates at ``sigma``."""
    return denoiser._x0(video, audio, sigma, contexts.video, contexts.audio)
