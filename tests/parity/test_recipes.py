"""Each recipe, from image + prompt contexts to final latents, against Lightricks' own pipelines
(tests/parity/recipe_reference.py) on the twins: the same weights, the same seed, float32 on the CPU.

Both sides draw their noise from one generator seeded alike, in the same order and shapes, so nothing is
replayed by hand: a mismatch in noise handling shows up as a failure like any other.
"""

from __future__ import annotations

import dataclasses
import types

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines.conditioning import ImageCondition, compressed_like_training
from pipelines.denoise import Contexts
from pipelines.guidance import POLICIES, GuidancePolicy, ModalityGuidance
from pipelines.recipes import DenoiseJob, RecipeRunner, recipe_spec
from tests.parity.recipe_reference import ReferenceInputs, run_reference, tiny_audio_shape
from tests.parity.record import current_test, record
from tests.parity.twins import TEXT_HIDDEN, build_twins

# Max-abs tolerance for a whole denoising loop (float32; a loop compounds ~1e-6 per forward).
LOOP_TOLERANCE = 1e-4

WIDTH, HEIGHT, NUM_FRAMES, FPS = 128, 64, 17, 24.0
SEED = 1234
STEPS = 3


@pytest.fixture(scope="module")
def twins():
    return build_twins(0)


@pytest.fixture(scope="module")
def image_path(tmp_path_factory):
    # Not the output's aspect ratio, so the cover-and-crop of each stage is exercised.
    rows, cols = np.mgrid[0:90, 0:160]
    pixels = np.stack([rows * 2.5, cols * 1.5, (rows + cols) % 255], axis=-1).astype(np.uint8)
    path = tmp_path_factory.mktemp("parity") / "image.png"
    Image.fromarray(pixels).save(path)
    return str(path)


@pytest.fixture(scope="module")
def contexts():
    generator = torch.Generator().manual_seed(7)
    return [torch.randn(1, 12, TEXT_HIDDEN, generator=generator) for _ in range(4)]


def reference_params(guidance: ModalityGuidance):
    from ltx_core.components.guiders import MultiModalGuiderParams

    return MultiModalGuiderParams(
        cfg_scale=guidance.cfg,
        stg_scale=guidance.stg,
        stg_blocks=list(guidance.stg_blocks),
        rescale_scale=guidance.rescale,
        modality_scale=guidance.modality,
        skip_step=0,
    )


# LTX_2_PARAMS with STG on block 1: the twins have 2 blocks, and block 29 would perturb nothing.
FULL_GUIDANCE = dataclasses.replace(
    POLICIES["ltx-pipelines"],
    video=dataclasses.replace(POLICIES["ltx-pipelines"].video, stg_blocks=(1,)),
    audio=dataclasses.replace(POLICIES["ltx-pipelines"].audio, stg_blocks=(1,)),
)


def run_ours(bundle, recipe: str, image_path: str, contexts, policy: GuidancePolicy, steps: int = STEPS):
    runner = RecipeRunner(bundle, recipe_spec(recipe, steps))
    video, audio, negative_video, negative_audio = contexts
    job = DenoiseJob(
        images=[ImageCondition(compressed_like_training(Image.open(image_path)))],
        width=WIDTH,
        height=HEIGHT,
        num_frames=NUM_FRAMES,
        fps=FPS,
        policy=policy if recipe != "distilled" else policy.unguided(),
        contexts=Contexts(video, audio, negative_video, negative_audio),
        generator=torch.Generator("cpu").manual_seed(SEED),
        on_step=lambda step: None,
    )
    with torch.no_grad():
        return runner.run(job)


def run_theirs(
    twins, recipe: str, image_path: str, contexts, policy: GuidancePolicy, monkeypatch, distilled=None, images=None
):
    """ltx-pipelines' recipe on the twins; ``images``: its (path, frame, strength) conditionings instead of
    ``image_path`` at frame 0 ("" and no images: text-to-video)."""
    tiny_audio_shape(monkeypatch)
    video, audio, negative_video, negative_audio = contexts
    inputs = ReferenceInputs(
        image_path=image_path,
        video_context=video,
        audio_context=audio,
        negative_video_context=negative_video,
        negative_audio_context=negative_audio,
        seed=SEED,
        width=WIDTH,
        height=HEIGHT,
        num_frames=NUM_FRAMES,
        fps=FPS,
        steps=STEPS,
        video_params=reference_params(policy.video),
        audio_params=reference_params(policy.audio),
        images=None if images is None else tuple(images),
    )
    return run_reference(recipe, twins.reference, inputs, distilled_model=distilled)


def normalized_video(bundle, video: torch.Tensor) -> torch.Tensor:
    vae = bundle.pipe.vae
    return (video - vae.latents_mean.view(1, -1, 1, 1, 1)) / vae.latents_std.view(1, -1, 1, 1, 1)


def normalized_audio(bundle, audio: torch.Tensor) -> torch.Tensor:
    """[1, C, L, M] un-normalised -> [1, C, L, M] normalised (the statistics are per packed C*M feature)."""
    audio_vae = bundle.pipe.audio_vae
    packed = audio.transpose(1, 2).flatten(2)
    packed = (packed - audio_vae.latents_mean) / audio_vae.latents_std
    return packed.unflatten(2, (audio.shape[1], -1)).transpose(1, 2)


def max_diff(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    assert ours.shape == theirs.shape
    return (ours.float() - theirs.float()).abs().max().item()


def assert_same_latents(bundle, ours, theirs, what: str = "") -> None:
    """``what`` names the run in the parity report (default: the test's id)."""
    what = what or current_test()
    video = max_diff(normalized_video(bundle, ours.video), theirs.video)
    audio = max_diff(normalized_audio(bundle, ours.audio), theirs.audio)
    record(f"{what}: final video latents", video, LOOP_TOLERANCE)
    record(f"{what}: final audio latents", audio, LOOP_TOLERANCE)
    assert video < LOOP_TOLERANCE and audio < LOOP_TOLERANCE, f"video {video:.2e}, audio {audio:.2e}"
    # Not vacuous: the latents moved well away from zero.
    assert theirs.video.abs().max() > 0.1 and theirs.audio.abs().max() > 0.1


@pytest.mark.parametrize("recipe", ["two-stage", "one-stage"])
def test_guided_recipe_matches_the_reference(twins, image_path, contexts, monkeypatch, recipe):
    ours = run_ours(twins.bundle, recipe, image_path, contexts, FULL_GUIDANCE)
    theirs = run_theirs(twins, recipe, image_path, contexts, FULL_GUIDANCE, monkeypatch)
    assert_same_latents(twins.bundle, ours, theirs, f"{recipe} recipe, full guidance")
    # Guided steps: prompt, negative prompt, STG and isolated-modality passes, each at batch 1.
    assert (ours.passes[0].count, ours.passes[0].max_batch) == (4 * STEPS, 1)
    assert FULL_GUIDANCE.passes_per_step(num_blocks=2) == 4


def test_default_policy_is_ltx_pipelines_ltx_2_params_and_matches_it(twins, image_path, contexts, monkeypatch):
    """The server's default policy, with its real STG block (29, which the 2-block twins do not have), against
    the reference's own LTX_2_PARAMS: the STG pass perturbs nothing on either side, and ours skips it."""
    from ltx_pipelines.utils.constants import LTX_2_PARAMS

    policy = POLICIES["ltx-pipelines"]
    assert reference_params(policy.video) == LTX_2_PARAMS.video_guider_params
    assert reference_params(policy.audio) == LTX_2_PARAMS.audio_guider_params
    ours = run_ours(twins.bundle, "two-stage", image_path, contexts, policy)
    tiny_audio_shape(monkeypatch)
    video, audio, negative_video, negative_audio = contexts
    inputs = ReferenceInputs(
        image_path, video, audio, negative_video, negative_audio, SEED, WIDTH, HEIGHT, NUM_FRAMES, FPS, STEPS,
        LTX_2_PARAMS.video_guider_params, LTX_2_PARAMS.audio_guider_params,
    )
    theirs = run_reference("two-stage", twins.reference, inputs)
    assert_same_latents(twins.bundle, ours, theirs, "two-stage recipe, default policy (LTX_2_PARAMS)")
    assert ours.passes[0].count == 3 * STEPS  # no STG pass where the model has no block 29
    assert policy.passes_per_step(num_blocks=2) == 3 and policy.passes_per_step(num_blocks=48) == 4


def test_stage_2_and_distilled_run_batch_1_unguided_passes(twins, image_path, contexts):
    two_stage = run_ours(twins.bundle, "two-stage", image_path, contexts, FULL_GUIDANCE)
    distilled = run_ours(twins.bundle, "distilled", image_path, contexts, FULL_GUIDANCE)
    assert (two_stage.passes[1].count, two_stage.passes[1].max_batch) == (3, 1)
    assert [(p.count, p.max_batch) for p in distilled.passes] == [(8, 1), (3, 1)]


def test_distilled_recipe_with_the_lora_matches_the_reference(twins, image_path, contexts, monkeypatch):
    """Without the distilled checkpoint, both stages run the base model with the distilled LoRA; the reference
    runs the same weights fused."""
    ours = run_ours(twins.bundle, "distilled", image_path, contexts, FULL_GUIDANCE)
    theirs = run_theirs(
        twins, "distilled", image_path, contexts, FULL_GUIDANCE, monkeypatch, distilled=twins.reference.transformer_lora
    )
    assert_same_latents(twins.bundle, ours, theirs, "distilled recipe with the LoRA")


def test_distilled_recipe_with_the_checkpoint_matches_the_reference(twins, image_path, contexts, monkeypatch):
    """With the distilled checkpoint, both stages run that transformer (another twin's here) and no LoRA."""
    other = build_twins(1)
    bundle = types.SimpleNamespace(
        pipe=twins.bundle.pipe,
        latent_upsampler=twins.bundle.latent_upsampler,
        distilled_adapter=twins.bundle.distilled_adapter,
        distilled_transformer=other.bundle.pipe.transformer,
    )
    ours = run_ours(bundle, "distilled", image_path, contexts, FULL_GUIDANCE)
    theirs = run_theirs(
        twins, "distilled", image_path, contexts, FULL_GUIDANCE, monkeypatch, distilled=other.reference.transformer
    )
    assert_same_latents(twins.bundle, ours, theirs, "distilled recipe with the checkpoint")


@pytest.mark.parametrize("recipe", ["two-stage", "one-stage"])
def test_recipe_decodes_to_the_reference_frames_and_waveform(twins, image_path, contexts, monkeypatch, recipe):
    """From image + contexts to what is muxed: uint8 frames through our chunked decoder and the waveform
    through the audio VAE and vocoder, against the reference's decode_video / decode_audio."""
    from ltx_core.model.audio_vae import decode_audio
    from ltx_core.model.video_vae import decode_video

    from pipelines.decode import decode_video_chunks
    from pipelines.generate import decode_waveform

    pipe = twins.bundle.pipe
    ours = run_ours(twins.bundle, recipe, image_path, contexts, FULL_GUIDANCE)
    theirs = run_theirs(twins, recipe, image_path, contexts, FULL_GUIDANCE, monkeypatch)
    with torch.no_grad():
        our_frames = torch.cat(list(decode_video_chunks(pipe.vae, ours.video, num_frames=NUM_FRAMES, chunk_frames=8)))
        their_frames = torch.cat(list(decode_video(theirs.video, twins.reference.video_decoder)))
        our_wave = decode_waveform(pipe, ours.audio)
        their_wave = decode_audio(theirs.audio, twins.reference.audio_decoder, twins.reference.vocoder).waveform
    assert our_frames.shape == their_frames.shape == (NUM_FRAMES, HEIGHT, WIDTH, 3)
    levels = (our_frames.int() - their_frames.int()).abs()
    record(f"{recipe} recipe: decoded frames", levels.max().item(), 1, unit="uint8 levels")
    record(f"{recipe} recipe: decoded frames, mean |diff|", levels.float().mean().item(), 1e-3, unit="uint8 levels")
    # Latents agree to ~1e-6; a value that close to a whole level may still truncate to the next one.
    assert levels.max() <= 1 and levels.float().mean() < 1e-3, f"max {levels.max()}, mean {levels.float().mean()}"
    assert their_frames.float().std() > 5  # not a flat image
    assert our_wave.shape == tuple(their_wave.shape)
    wave = max_diff(torch.from_numpy(our_wave), their_wave)
    record(f"{recipe} recipe: waveform", wave, LOOP_TOLERANCE)
    assert wave < LOOP_TOLERANCE
    assert their_wave.abs().max() > 1e-3


def test_a_stage_with_stg_makes_an_as_converted_transformer_honour_it(twins):
    """Real LTX-2.0 weights load with perturbed_attn=False (diffusers' converter), which would skip STG silently."""
    from diffusers import LTX2VideoTransformer3DModel

    from pipelines.denoise import Geometry, StageDenoiser
    from tests.parity.twins import diffusers_transformer_config

    as_converted = LTX2VideoTransformer3DModel(**{**diffusers_transformer_config(), "perturbed_attn": False})
    assert not any(block.perturbed_attn for block in as_converted.transformer_blocks)
    geometry = Geometry(torch.zeros(1), torch.zeros(1), 1, 1, 1, 1, FPS)
    StageDenoiser(as_converted, FULL_GUIDANCE.unguided(), geometry, Contexts(*[torch.zeros(1)] * 2))
    assert not any(block.perturbed_attn for block in as_converted.transformer_blocks)  # no STG: left alone
    StageDenoiser(as_converted, FULL_GUIDANCE, geometry, Contexts(*[torch.zeros(1)] * 2))
    assert all(block.perturbed_attn for block in as_converted.transformer_blocks)
