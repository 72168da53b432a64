"""The memory and precision options against the default mode, on the tiny LTX-2 model in float32.

- ``stage2_lora="merged"`` (the distilled LoRA merged into a second transformer at load, as Lightricks'
  pipelines fuse theirs) equals the peft adapter up to float rounding, and never changes the base.
- ``fp8`` storage and compute are lossy by design (opt-in): their difference from the default is measured
  and recorded here, for the parity report, with the bound each test allows.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
import torch
from PIL import Image

import pipelines
from pipelines.conditioning import ImageCondition, compressed_like_training
from pipelines.interface import JobSpec
from pipelines.recipes import DenoiseJob, RecipeOutput

from .record import record

REQUEST = JobSpec(
    prompt="a lighthouse at dusk",
    negative_prompt="blurry",
    width=128,
    height=128,
    num_frames=17,
    fps=24,
    seed=7,
    guidance_scale=4.0,
)
STEPS = 4


def tiny_generator(recipe: str, **options):
    return pipelines.load_generator("tiny", device="cpu", recipe=recipe, num_inference_steps=STEPS, **options)


def run(generator) -> tuple[RecipeOutput, np.ndarray]:
    """A request's final latents and its decoded uint8 frames."""
    image = Image.radial_gradient("L").convert("RGB").resize((200, 300))
    policy = generator.request_policy(REQUEST)
    with torch.inference_mode():
        job = DenoiseJob(
            images=[ImageCondition(compressed_like_training(image, 33))],
            width=REQUEST.width,
            height=REQUEST.height,
            num_frames=REQUEST.num_frames,
            fps=float(REQUEST.fps),
            policy=policy,
            contexts=generator._encode_prompt(REQUEST, policy),
            generator=torch.Generator().manual_seed(REQUEST.seed),
            on_step=lambda step: None,
        )
        output = generator.runner.run(job)
        frames = np.concatenate(list(generator._frame_chunks(output.video, generator._plan_size(REQUEST))))
    return output, frames


@cache
def default_output(recipe: str) -> tuple[RecipeOutput, np.ndarray]:
    return run(tiny_generator(recipe))


def latent_difference(output: RecipeOutput, reference: RecipeOutput) -> float:
    return max((output.video - reference.video).abs().max().item(), (output.audio - reference.audio).abs().max().item())


def frame_levels(frames: np.ndarray, reference: np.ndarray) -> int:
    return int(np.abs(frames.astype(np.int16) - reference.astype(np.int16)).max())


def transformer_pass(transformer, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward of a tiny transformer on fixed random inputs (4 latent frames of 4x4, 10 audio tokens)."""
    config = transformer.config
    generator = torch.Generator().manual_seed(seed)
    video, audio, text = 64, 10, 8

    def noise(*shape):
        return torch.randn(*shape, generator=generator)

    with torch.inference_mode():
        return transformer(
            hidden_states=noise(1, video, config.in_channels),
            audio_hidden_states=noise(1, audio, config.audio_in_channels),
            encoder_hidden_states=noise(1, text, config.caption_channels),
            audio_encoder_hidden_states=noise(1, text, config.caption_channels),
            timestep=torch.full((1, video), 600.0),
            audio_timestep=torch.full((1, audio), 600.0),
            sigma=torch.full((1,), 600.0),
            audio_sigma=torch.full((1,), 600.0),
            num_frames=4,
            height=4,
            width=4,
            fps=24.0,
            audio_num_frames=audio,
            return_dict=False,
        )


def test_the_merged_stage_2_transformer_is_the_base_plus_the_lora_adapter():
    adapter = tiny_generator("two-stage")
    merged = tiny_generator("two-stage", stage2_lora="merged")
    stage2 = merged.runner.distilled_transformer
    assert stage2 is not None and stage2 is not merged.pipe.transformer
    adapter.pipe.enable_lora()
    try:
        with_adapter = transformer_pass(adapter.pipe.transformer)
    finally:
        adapter.pipe.disable_lora()
    merged_pass = transformer_pass(stage2)
    difference = max((a - b).abs().max().item() for a, b in zip(merged_pass, with_adapter, strict=True))
    record("stage-2 LoRA merged at load vs peft adapter: one forward", difference, 1e-6)
    assert difference <= 1e-6


@pytest.mark.parametrize("recipe", ["two-stage", "distilled"])
def test_a_merged_lora_request_matches_the_adapter_request(recipe):
    output, frames = run(tiny_generator(recipe, stage2_lora="merged"))
    reference, reference_frames = default_output(recipe)
    difference = latent_difference(output, reference)
    record(f"stage-2 LoRA merged at load vs peft adapter: {recipe} final latents", difference, 1e-5)
    assert difference <= 1e-5
    levels = frame_levels(frames, reference_frames)
    record(f"stage-2 LoRA merged at load vs peft adapter: {recipe} decoded frames", levels, 1, unit="uint8 levels")
    assert levels <= 1


def test_the_base_transformer_is_bit_identical_before_and_after_a_merged_lora_request():
    generator = tiny_generator("two-stage", stage2_lora="merged")
    before = transformer_pass(generator.pipe.transformer)
    run(generator)
    after = transformer_pass(generator.pipe.transformer)
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    # ... and the base lost only its adapter: it computes what the adapter-mode base computes with it off.
    unmerged = transformer_pass(tiny_generator("two-stage").pipe.transformer)
    assert all(torch.equal(a, b) for a, b in zip(after, unmerged, strict=True))
    assert not any("lora" in name for name, _ in generator.pipe.transformer.named_modules())


# (option, recipe) -> the bound its difference from the default mode must stay under, in final latents
# (whose values reach about 4 here). Lossy by design: opt-in only.
FP8_BOUNDS = {
    ("storage", "two-stage"): 0.1,
    ("compute", "two-stage"): 0.1,
    ("storage", "one-stage"): 0.4,
    ("compute", "one-stage"): 0.5,
}


@pytest.mark.parametrize(("mode", "recipe"), list(FP8_BOUNDS))
def test_fp8_differs_from_the_default_by_a_recorded_bound(mode, recipe):
    output, frames = run(tiny_generator(recipe, fp8=mode))
    reference, reference_frames = default_output(recipe)
    difference = latent_difference(output, reference)
    bound = FP8_BOUNDS[(mode, recipe)]
    record(f"fp8 {mode} vs default: {recipe} final latents (lossy, opt-in)", difference, bound)
    record(f"fp8 {mode} vs default: {recipe} decoded frames (lossy, opt-in)", frame_levels(frames, reference_frames),
           255, unit="uint8 levels")  # fmt: skip
    assert 0 < difference <= bound
