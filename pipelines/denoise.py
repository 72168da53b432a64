"""One denoising stage of LTX-2: audio and video latents, side by side, from noise (or a re-noised
latent) to clean, with the diffusers transformer and Lightricks' sampling rules (ltx-core 1.0.0).

Latents live as token sequences ``[batch, tokens, features]`` with a per-token denoise mask: 1 where the
model denoises, 0 where a conditioning latent is kept clean (the first latent frame, from the image).
Each step the transformer's velocity becomes an x0 estimate at each token's own timestep (mask x sigma),
guidance combines the estimates (pipelines/guidance.py), conditioned tokens are put back to their clean
value, and a first-order Euler step moves to the next sigma. Noise is drawn video first, then audio, in
the state's dtype, from the job's generator, exactly as the reference does, so a seed gives the
reference's noise.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch

from .guidance import GuidancePolicy, ModalityGuidance

# diffusers' LTX-2 transformer takes timesteps on the flow-matching scale of its training steps.
DEFAULT_TIMESTEP_SCALE = 1000.0


# (video, audio) x0 estimates of one pass, or zeros standing for a pass a policy does not run.
Estimates = tuple["torch.Tensor | float", "torch.Tensor | float"]


@dataclass(frozen=True)
class LatentState:
    latent: torch.Tensor  # [B, T, D] noisy tokens
    clean: torch.Tensor  # [B, T, D] what conditioned tokens are held at
    mask: torch.Tensor  # [B, T, 1] 1: denoise this token; 0: keep it clean

    def noised(self, generator: torch.Generator, noise_scale: float) -> "LatentState":
        noise = torch.randn(
            self.latent.shape, generator=generator, device=self.latent.device, dtype=self.latent.dtype
        )
        weight = self.mask * noise_scale
        return replace(self, latent=(noise * weight + self.latent * (1 - weight)).to(self.latent.dtype))


@dataclass(frozen=True)
class Contexts:
    """Text contexts after the connectors, batch 1 each; negatives only when some guidance uses them."""

    video: torch.Tensor
    audio: torch.Tensor
    negative_video: torch.Tensor | None = None
    negative_audio: torch.Tensor | None = None


@dataclass(frozen=True)
class Geometry:
    """What the transformer needs besides the tokens: RoPE coordinates and the latent grid."""

    video_coords: torch.Tensor
    audio_coords: torch.Tensor
    frames: int
    height: int
    width: int
    audio_frames: int
    fps: float


@dataclass(frozen=True)
class Passes:
    """How many transformer passes a stage ran, and at which batch size (checked by tests)."""

    count: int = 0
    max_batch: int = 0


class StageDenoiser:
    """Runs one stage's Euler loop on one transformer under one guidance policy."""

    def __init__(self, transformer, policy: GuidancePolicy, geometry: Geometry, contexts: Contexts) -> None:
        self.transformer = transformer
        self.policy = policy
        self.geometry = geometry
        self.contexts = contexts
        self.passes = Passes()
        config = getattr(transformer, "config", None)
        self._timestep_scale = float(getattr(config, "timestep_scale_multiplier", DEFAULT_TIMESTEP_SCALE))
        blocks = len(getattr(transformer, "transformer_blocks", ()))
        # STG on blocks the model does not have perturbs nothing: its pass would equal the prompt pass.
        self._stg_blocks = {
            "video": [b for b in policy.video.stg_blocks if b < blocks],
            "audio": [b for b in policy.audio.stg_blocks if b < blocks],
        }
        if self._perturbed_blocks() is not None:
            make_stg_capable(transformer)

    def run(
        self,
        video: LatentState,
        audio: LatentState,
        sigmas: torch.Tensor,
        on_step: Callable[[int], None],
    ) -> tuple[LatentState, LatentState]:
        sigmas = sigmas.to(torch.float32).cpu()
        for index in range(len(sigmas) - 1):
            sigma, step = float(sigmas[index]), float(sigmas[index + 1] - sigmas[index])  # float32 arithmetic
            video_x0, audio_x0 = self.denoised(video, audio, sigma)
            video = replace(video, latent=_euler(video.latent, _keep_clean(video_x0, video), sigma, step))
            audio = replace(audio, latent=_euler(audio.latent, _keep_clean(audio_x0, audio), sigma, step))
            on_step(index + 1)  # may raise to cancel the job: let it propagate
        return video, audio

    def denoised(self, video: LatentState, audio: LatentState, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The guided x0 estimates of both modalities at ``sigma``."""
        policy, contexts = self.policy, self.contexts
        cond = self._x0(video, audio, sigma, contexts.video, contexts.audio)
        # A term a policy does not use stays 0: its scale is 0 (STG) or 1 (CFG, modality), so it adds nothing.
        uncond: Estimates = (0.0, 0.0)
        perturbed: Estimates = (0.0, 0.0)
        isolated: Estimates = (0.0, 0.0)
        if policy.uses_negative_prompt:
            if contexts.negative_video is None or contexts.negative_audio is None:
                raise ValueError("this guidance policy needs the negative prompt's contexts")
            uncond = self._x0(video, audio, sigma, contexts.negative_video, contexts.negative_audio)
        stg_blocks = self._perturbed_blocks()
        if stg_blocks is not None:
            perturbed = self._x0(video, audio, sigma, contexts.video, contexts.audio, stg_blocks=stg_blocks)
        elif policy.video.uses_perturbed_pass or policy.audio.uses_perturbed_pass:
            perturbed = cond  # the perturbed blocks do not exist in this model: nothing is perturbed
        if policy.video.uses_isolated_pass or policy.audio.uses_isolated_pass:
            isolated = self._x0(video, audio, sigma, contexts.video, contexts.audio, isolate=True)
        return (
            _combine(policy.video, cond[0], uncond[0], perturbed[0], isolated[0]),
            _combine(policy.audio, cond[1], uncond[1], perturbed[1], isolated[1]),
        )

    def _perturbed_blocks(self) -> list[int] | None:
        """The blocks whose self-attention the STG pass skips, or None when no pass is due.

        diffusers' transformer skips the same blocks in both modalities; Lightricks' default policies
        perturb the same blocks for both, and a policy that differs per modality is refused here.
        """
        wanted = [name for name in ("video", "audio") if getattr(self.policy, name).uses_perturbed_pass]
        blocks = {tuple(self._stg_blocks[name]) for name in wanted}
        if not wanted or blocks == {()}:
            return None
        if len(blocks) > 1 or len(wanted) < 2:
            raise ValueError("STG must perturb the same blocks in both modalities")
        return list(blocks.pop())

    def _x0(
        self,
        video: LatentState,
        audio: LatentState,
        sigma: float,
        video_context: torch.Tensor,
        audio_context: torch.Tensor,
        *,
        stg_blocks: list[int] | None = None,
        isolate: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        geometry = self.geometry
        video_sigmas = video.mask.squeeze(-1) * sigma  # [B, T]: 0 on clean (conditioning) tokens
        audio_sigmas = audio.mask.squeeze(-1) * sigma
        global_sigma = torch.full((video.latent.shape[0],), sigma * self._timestep_scale, device=video.latent.device)
        dtype = self._compute_dtype(video.latent.dtype)
        video_velocity, audio_velocity = self.transformer(
            hidden_states=video.latent.to(dtype),
            audio_hidden_states=audio.latent.to(dtype),
            encoder_hidden_states=video_context.to(dtype),
            audio_encoder_hidden_states=audio_context.to(dtype),
            timestep=video_sigmas * self._timestep_scale,
            audio_timestep=audio_sigmas * self._timestep_scale,
            sigma=global_sigma,
            audio_sigma=global_sigma,
            # The connectors leave no padding to mask, and Lightricks' model attends to every context token.
            encoder_attention_mask=None,
            audio_encoder_attention_mask=None,
            num_frames=geometry.frames,
            height=geometry.height,
            width=geometry.width,
            fps=geometry.fps,
            audio_num_frames=geometry.audio_frames,
            video_coords=geometry.video_coords,
            audio_coords=geometry.audio_coords,
            isolate_modalities=isolate,
            spatio_temporal_guidance_blocks=stg_blocks,
            use_cross_timestep=self.policy.cross_timestep,
            return_dict=False,
        )
        self.passes = Passes(self.passes.count + 1, max(self.passes.max_batch, video.latent.shape[0]))
        return _to_x0(video.latent, video_velocity, video_sigmas), _to_x0(audio.latent, audio_velocity, audio_sigmas)

    def _compute_dtype(self, state_dtype: torch.dtype) -> torch.dtype:
        # A transformer stored in float8 computes in the state's dtype (bf16); others in their own.
        dtype = getattr(self.transformer, "dtype", state_dtype)
        return state_dtype if dtype in (torch.float8_e4m3fn, torch.float8_e5m2) else dtype


def make_stg_capable(transformer) -> None:
    """Let ``spatio_temporal_guidance_blocks`` take effect in diffusers' LTX-2 transformer.

    diffusers' converter builds LTX-2.0 transformers with ``perturbed_attn=False``, whose attention
    processors have no perturbation path: STG is then silently skipped and its pass equals the prompt pass.
    The perturbing processor has no weights of its own and, unperturbed, computes exactly what the plain one
    does, so it is switched in for every attention of every block, on the attention kernel its predecessor was
    given (pipelines/speed.py). Idempotent.
    """
    from diffusers.models.transformers.transformer_ltx2 import (
        LTX2AudioVideoAttnProcessor,
        LTX2PerturbedAttnProcessor,
    )

    for block in getattr(transformer, "transformer_blocks", ()):
        if getattr(block, "perturbed_attn", True):
            continue
        for module in block.modules():
            plain = getattr(module, "processor", None)
            if isinstance(plain, LTX2AudioVideoAttnProcessor):
                perturbing = LTX2PerturbedAttnProcessor()
                perturbing._attention_backend = plain._attention_backend
                module.set_processor(perturbing)
        block.perturbed_attn = True


def _to_x0(latent: torch.Tensor, velocity: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    x0 = latent.to(torch.float32) - velocity.to(torch.float32) * sigmas.unsqueeze(-1).to(torch.float32)
    return x0.to(latent.dtype)


def _combine(guidance: ModalityGuidance, cond, uncond, perturbed, isolated) -> torch.Tensor:
    prediction = (
        cond
        + (guidance.cfg - 1) * (cond - uncond)
        + guidance.stg * (cond - perturbed)
        + (guidance.modality - 1) * (cond - isolated)
    )
    if guidance.rescale != 0:
        # Over the whole estimate, conditioned (clean) tokens included, as the reference computes it.
        factor = guidance.rescale * (cond.std() / prediction.std()) + (1 - guidance.rescale)
        prediction = prediction * factor
    return prediction


def _keep_clean(x0: torch.Tensor, state: LatentState) -> torch.Tensor:
    return (x0 * state.mask + state.clean.to(torch.float32) * (1 - state.mask)).to(x0.dtype)


def _euler(latent: torch.Tensor, x0: torch.Tensor, sigma: float, step: float) -> torch.Tensor:
    velocity = ((latent.to(torch.float32) - x0.to(torch.float32)) / sigma).to(latent.dtype)
    return (latent.to(torch.float32) + velocity.to(torch.float32) * step).to(latent.dtype)
