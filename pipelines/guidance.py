"""Guidance policies: how a guided step combines the transformer's predictions, per modality.

A guided step denoises the state once with the prompt (``cond``) and, as the policy asks, once with the
negative prompt (CFG), once with self-attention skipped in some blocks (STG) and once with the
audio<->video cross-attention switched off (modality guidance). In x0 space, per modality:

    pred = cond + (cfg - 1)(cond - uncond) + stg (cond - perturbed) + (modality - 1)(cond - isolated)
    pred *= rescale * std(cond) / std(pred) + (1 - rescale)          (when rescale != 0)

Two policies, because Lightricks' two LTX-2.0 releases disagree:

- ``ltx-pipelines`` (default): ``ltx-pipelines`` 1.0.0's ``LTX_2_PARAMS``, which Lightricks documents as
  the defaults "for LTX-2.0 non-distilled models": video CFG 3, STG 1 on block 29, modality 3, rescale 0.7;
  audio CFG 7 with the same STG, modality and rescale; the cross-attention between modalities is
  modulated by the other modality's sigma.
- ``ltx-2.0-release``: the January 2026 LTX-2.0 release: plain CFG 4 for video and audio, no STG, no
  modality guidance, no rescale, each modality's cross-attention modulated by its own timesteps.

The request's ``guidance_scale`` is the video CFG scale under either policy (the Segmind API has one
guidance knob); audio CFG follows the policy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class ModalityGuidance:
    cfg: float = 1.0
    stg: float = 0.0
    stg_blocks: tuple[int, ...] = ()
    modality: float = 1.0
    rescale: float = 0.0

    @property
    def uses_negative_prompt(self) -> bool:
        return not math.isclose(self.cfg, 1.0)

    @property
    def uses_perturbed_pass(self) -> bool:
        return not math.isclose(self.stg, 0.0)

    @property
    def uses_isolated_pass(self) -> bool:
        return not math.isclose(self.modality, 1.0)


UNGUIDED = ModalityGuidance()


@dataclass(frozen=True)
class GuidancePolicy:
    name: str
    video: ModalityGuidance
    audio: ModalityGuidance
    # True: each modality's cross-attention to the other is modulated by the OTHER modality's sigma.
    cross_timestep: bool

    def with_video_cfg(self, scale: float) -> "GuidancePolicy":
        """The policy for one request, whose guidance_scale sets the video CFG scale.

        Under ``ltx-2.0-release`` (one CFG scale for both modalities) it sets the audio's too.
        """
        audio = replace(self.audio, cfg=scale) if self.name == "ltx-2.0-release" else self.audio
        return replace(self, video=replace(self.video, cfg=scale), audio=audio)

    def for_request(self, guidance_scale: float, *, guided: bool) -> "GuidancePolicy":
        """What one request runs under: its guidance_scale as the video CFG scale, or no guidance at all
        for an unguided recipe (distilled)."""
        policy = self.with_video_cfg(guidance_scale)
        return policy if guided else policy.unguided()

    def unguided(self) -> "GuidancePolicy":
        """Stage 2 and the distilled recipe: one pass per step, prompt only."""
        return replace(self, video=UNGUIDED, audio=UNGUIDED)

    @property
    def uses_negative_prompt(self) -> bool:
        return self.video.uses_negative_prompt or self.audio.uses_negative_prompt

    def passes_per_step(self, num_blocks: int) -> int:
        """Transformer passes (batch 1 each) one step costs on a model with ``num_blocks`` blocks: the prompt,
        then the negative prompt, STG (only where a perturbed block exists) and isolated modalities as used."""
        modalities = (self.video, self.audio)
        stg = any(m.uses_perturbed_pass and any(b < num_blocks for b in m.stg_blocks) for m in modalities)
        isolated = any(m.uses_isolated_pass for m in modalities)
        return 1 + int(self.uses_negative_prompt) + int(stg) + int(isolated)

    def summary(self) -> str:
        def one(m: ModalityGuidance) -> str:
            blocks = ",".join(str(b) for b in m.stg_blocks) or "-"
            return f"cfg {m.cfg:g}, stg {m.stg:g} (blocks {blocks}), modality {m.modality:g}, rescale {m.rescale:g}"

        return (
            f"{self.name}: video {one(self.video)}; audio {one(self.audio)}; "
            f"cross-modal timestep {'other modality' if self.cross_timestep else 'own'}"
        )


_LTX_PIPELINES_STG_BLOCKS = (29,)

POLICIES = {
    "ltx-pipelines": GuidancePolicy(
        name="ltx-pipelines",
        video=ModalityGuidance(cfg=3.0, stg=1.0, stg_blocks=_LTX_PIPELINES_STG_BLOCKS, modality=3.0, rescale=0.7),
        audio=ModalityGuidance(cfg=7.0, stg=1.0, stg_blocks=_LTX_PIPELINES_STG_BLOCKS, modality=3.0, rescale=0.7),
        cross_timestep=True,
    ),
    "ltx-2.0-release": GuidancePolicy(
        name="ltx-2.0-release",
        video=ModalityGuidance(cfg=4.0),
        audio=ModalityGuidance(cfg=4.0),
        cross_timestep=False,
    ),
}
GUIDANCE_POLICIES = tuple(POLICIES)
DEFAULT_GUIDANCE_POLICY = "ltx-pipelines"


def guidance_policy(name: str) -> GuidancePolicy:
    if name not in POLICIES:
        raise ValueError(f"guidance: must be one of {', '.join(POLICIES)}; got {name!r}")
    return POLICIES[name]
