"""Text-to-video and keyframes in each recipe, against Lightricks' own pipelines (tests/parity/recipe_reference.py)
on the twins, as tests/parity/test_recipes.py checks image-to-video: same weights, same seed, float32 on the CPU.

The reference's ``combined_image_conditionings`` turns ``images=[]`` into no conditioning (every token denoised),
an image at frame 0 into a replaced first latent frame, and an image at a later frame into keyframe tokens
appended to the video's, placed in time by their positions and dropped after each stage. Both sides draw their
noise from one generator, the appended tokens included, so a mismatch in any of it fails the comparison.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines.conditioning import ImageCondition, compressed_like_training
from pipelines.denoise import Contexts
from pipelines.guidance import GuidancePolicy
from pipelines.recipes import DenoiseJob, RecipeRunner, recipe_spec
from tests.parity.test_recipes import (
    FPS,
    FULL_GUIDANCE,
    HEIGHT,
    NUM_FRAMES,
    SEED,
    STEPS,
    WIDTH,
    assert_same_latents,
    normalized_video,
    run_theirs,
)
from tests.parity.twins import TEXT_HIDDEN

MIDDLE, LAST = NUM_FRAMES // 2, NUM_FRAMES - 1  # 8 (inside latent frame 1, not on its first pixel frame), 16

# (frame, strength) of each conditioning image, in the order the request lists them.
CASES = {
    "text-to-video": (),
    "image and a keyframe": ((0, 1.0), (MIDDLE, 0.8)),
    "keyframes only": ((MIDDLE, 0.8), (LAST, 1.0)),
    # A keyframe may sit on frame 0 too: the first latent frame replaced, but held with less than full strength.
    "a weak first frame and a keyframe": ((0, 0.7), (LAST, 0.5)),
}


def pattern(seed: int, height: int = 72, width: int = 120) -> np.ndarray:
    """A different picture per seed, not the output's aspect ratio (each stage's cover-and-crop is exercised)."""
    rows, cols = np.mgrid[0:height, 0:width]
    phase = seed * 37
    return np.stack([(rows * 3 + phase) % 256, (cols * 2 + phase) % 256, (rows * cols + phase) % 256], axis=-1)


@pytest.fixture(scope="module")
def image_paths(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keyframes")
    paths = []
    for index in range(2):
        path = folder / f"image{index}.png"
        Image.fromarray(pattern(index).astype(np.uint8)).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def contexts():
    generator = torch.Generator().manual_seed(7)
    return [torch.randn(1, 12, TEXT_HIDDEN, generator=generator) for _ in range(4)]


def conditions(case: str, paths: list[str]) -> list[tuple[str, int, float]]:
    return [(paths[index], frame, strength) for index, (frame, strength) in enumerate(CASES[case])]


def run_ours(bundle, recipe: str, images, contexts, guidance: GuidancePolicy = FULL_GUIDANCE):
    video, audio, negative_video, negative_audio = contexts
    policy = guidance if recipe != "distilled" else guidance.unguided()
    job = DenoiseJob(
        images=[
            ImageCondition(compressed_like_training(Image.open(path)), frame, strength)
            for path, frame, strength in images
        ],
        width=WIDTH,
        height=HEIGHT,
        num_frames=NUM_FRAMES,
        fps=FPS,
        policy=policy,
        contexts=Contexts(video, audio, negative_video, negative_audio),
        generator=torch.Generator("cpu").manual_seed(SEED),
        on_step=lambda step: None,
    )
    with torch.no_grad():
        return RecipeRunner(bundle, recipe_spec(recipe, STEPS)).run(job)


def run_theirs_with(twins, recipe: str, images, contexts, monkeypatch, guidance: GuidancePolicy = FULL_GUIDANCE):
    distilled = twins.reference.transformer_lora if recipe == "distilled" else None
    return run_theirs(twins, recipe, "", contexts, guidance, monkeypatch, distilled=distilled, images=images)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("recipe", ["two-stage", "one-stage"])
def test_recipe_matches_the_reference(twins, image_paths, contexts, monkeypatch, recipe, case):
    images = conditions(case, image_paths)
    ours = run_ours(twins.bundle, recipe, images, contexts)
    theirs = run_theirs_with(twins, recipe, images, contexts, monkeypatch)
    assert_same_latents(twins.bundle, ours, theirs, f"{recipe} recipe, {case}")
    # The appended keyframe tokens are gone: the latents are the video's own grid.
    assert ours.video.shape == theirs.video.shape == (1, 8, 3, HEIGHT // 32, WIDTH // 32)


def test_distilled_text_to_video_matches_the_reference(twins, image_paths, contexts, monkeypatch):
    ours = run_ours(twins.bundle, "distilled", [], contexts)
    theirs = run_theirs_with(twins, "distilled", [], contexts, monkeypatch)
    assert_same_latents(twins.bundle, ours, theirs, "distilled recipe with the LoRA, text-to-video")


@pytest.mark.parametrize(
    "recipe, case",
    [("two-stage", "image and a keyframe"), ("one-stage", "text-to-video")],
)
def test_ltx_2_3_recipe_matches_the_reference(image_paths, monkeypatch, recipe, case):
    """LTX-2.3 runs the same recipes (its own transformer, connectors and LTX_2_3_PARAMS guidance)."""
    from tests.parity.test_ltx23 import GUIDANCE_2_3
    from tests.parity.twins23 import AUDIO_INNER, VIDEO_INNER, build_twins_2_3

    twins23 = build_twins_2_3(0)
    generator = torch.Generator().manual_seed(7)
    contexts = [torch.randn(1, 12, width, generator=generator) for width in (VIDEO_INNER, AUDIO_INNER) * 2]
    images = conditions(case, image_paths)
    ours = run_ours(twins23.bundle, recipe, images, contexts, GUIDANCE_2_3)
    theirs = run_theirs_with(twins23, recipe, images, contexts, monkeypatch, GUIDANCE_2_3)
    assert_same_latents(twins23.bundle, ours, theirs, f"LTX-2.3 {recipe} recipe, {case}")


def test_each_conditioning_changes_the_result(twins, image_paths, contexts):
    """Not vacuous: a keyframe's image, its frame and its strength each reach the latents (the runs above would
    also agree if both sides ignored them)."""
    paths = image_paths
    base = run_ours(twins.bundle, "one-stage", [(paths[0], MIDDLE, 0.8)], contexts)
    variants = {
        "no keyframe": [],
        "another image": [(paths[1], MIDDLE, 0.8)],
        "another frame": [(paths[0], LAST, 0.8)],
        "another strength": [(paths[0], MIDDLE, 0.5)],
    }
    for what, images in variants.items():
        other = run_ours(twins.bundle, "one-stage", images, contexts)
        difference = (normalized_video(twins.bundle, other.video) - normalized_video(twins.bundle, base.video)).abs()
        assert difference.max() > 1e-3, what
