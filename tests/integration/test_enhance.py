"""enhance_prompt on the tiny model: the loaded (random) Gemma rewrites the prompt before it is encoded, the
rewrite is returned, timed and reported, and the same seed rewrites the same way. Real diffusers and ffmpeg."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

import pipelines
from pipelines.enhance import PromptEnhancer
from pipelines.generate import load_image
from pipelines.interface import TASK_T2V, InvalidInputError
from tests.support.pipeline_inputs import sha256, small_spec, write_noise_picture

PROMPT = "a cat on a sofa"


@pytest.fixture(scope="module")
def generator():
    return pipelines.load_generator("tiny", recipe="one-stage", num_inference_steps=2)


@pytest.fixture(scope="module")
def image_path(tmp_path_factory) -> Path:
    return write_noise_picture(tmp_path_factory.mktemp("input") / "input.png")


def run(generator, params, image_path, output: Path):
    stages: list[tuple[str, int, int]] = []
    result = generator.generate(params, image_path, output, lambda *report: stages.append(report))
    return result, stages


@pytest.fixture(scope="module")
def enhanced(generator, image_path, tmp_path_factory):
    """One image-to-video request with enhance_prompt, seed 7."""
    output = tmp_path_factory.mktemp("enhanced") / "out.mp4"
    return run(generator, small_spec(PROMPT, enhance_prompt=True), image_path, output)


def test_off_by_default_nothing_is_rewritten(generator, image_path, tmp_path):
    result, stages = run(generator, small_spec(PROMPT), image_path, tmp_path / "plain.mp4")
    assert result.enhanced_prompt is None
    assert "enhance_prompt" not in result.stage_seconds
    assert all(stage != "enhancing_prompt" for stage, _, _ in stages)


def test_the_rewritten_prompt_is_returned_timed_and_reported(enhanced):
    result, stages = enhanced
    assert isinstance(result.enhanced_prompt, str) and result.enhanced_prompt.strip()
    assert result.enhanced_prompt != PROMPT
    assert result.stage_seconds["enhance_prompt"] > 0
    assert stages[:3] == [("enhancing_prompt", 0, 1), ("enhancing_prompt", 1, 1), ("encoding_prompt", 0, 1)]


def test_the_video_is_made_from_the_rewritten_prompt(generator, image_path, enhanced, tmp_path):
    """Same seed: the enhanced request's video equals a plain request's whose prompt is the rewrite, and
    differs from the plain request with the user's prompt."""
    result, _ = enhanced
    rewritten, _ = run(generator, small_spec(result.enhanced_prompt), image_path, tmp_path / "rewritten.mp4")
    plain, _ = run(generator, small_spec(PROMPT), image_path, tmp_path / "plain.mp4")
    assert sha256(result.output_path) == sha256(rewritten.output_path)
    assert sha256(result.output_path) != sha256(plain.output_path)


def new_tokens(generator, image, seed: int):
    """The token ids the tiny Gemma answers with (its byte tokens often decode to the same replacement
    characters, so seeds and images are told apart by tokens, not text)."""
    enhancer = PromptEnhancer.for_pipe(generator.pipe)
    return enhancer.generate(enhancer.model_inputs(PROMPT, image), seed).tolist()


def test_a_seed_rewrites_the_same_way(generator, image_path, enhanced, tmp_path):
    first, _ = enhanced
    again, _ = run(generator, small_spec(PROMPT, enhance_prompt=True), image_path, tmp_path / "again.mp4")
    assert again.enhanced_prompt == first.enhanced_prompt
    assert sha256(again.output_path) == sha256(first.output_path)
    assert new_tokens(generator, None, 7) == new_tokens(generator, None, 7) != new_tokens(generator, None, 8)


def test_text_to_video_rewrites_without_an_image(generator, image_path, tmp_path):
    params = small_spec(PROMPT, enhance_prompt=True, task=TASK_T2V)
    result, _ = run(generator, params, None, tmp_path / "t2v.mp4")
    assert result.enhanced_prompt and result.enhanced_prompt.strip()
    assert result.enhanced_prompt == PromptEnhancer.for_pipe(generator.pipe).enhance(PROMPT, None, params.seed)
    assert new_tokens(generator, None, 7) != new_tokens(generator, load_image(image_path), 7)  # the image counts


def test_a_blank_rewrite_falls_back_to_the_users_prompt(generator):
    class BlankTokenizer:
        """The tiny tokenizer, except that every answer decodes to whitespace."""

        def __init__(self, tokenizer):
            self.tokenizer = tokenizer

        def __getattr__(self, name):
            return getattr(self.tokenizer, name)

        def __call__(self, *args, **kwargs):
            return self.tokenizer(*args, **kwargs)

        def decode(self, *args, **kwargs):
            return " \n "

    enhancer = PromptEnhancer(generator.pipe.text_encoder, BlankTokenizer(generator.pipe.tokenizer))
    assert enhancer.enhance(PROMPT, None, 1) == PROMPT


def test_ltx25_does_not_offer_it():
    from pipelines.tiny import _build_tokenizer
    from pipelines.tiny25 import _build_text_encoder

    tokenizer = _build_tokenizer()
    with pytest.raises(InvalidInputError, match="enhance_prompt: not offered by LTX-2.5"):
        PromptEnhancer(_build_text_encoder(tokenizer), tokenizer)


def test_the_enhanced_spec_keeps_everything_else(generator, image_path, tmp_path):
    """Only the prompt changes: a negative prompt and the seed are the request's."""
    params = small_spec(PROMPT, enhance_prompt=True, negative_prompt="dark", seed=11)
    result, _ = run(generator, params, image_path, tmp_path / "kept.mp4")
    same, _ = run(generator, replace(params, prompt=result.enhanced_prompt, enhance_prompt=False), image_path,
                  tmp_path / "same.mp4")  # fmt: skip
    assert result.seed == 11 and sha256(result.output_path) == sha256(same.output_path)


def test_only_the_first_frame_is_shown_to_the_enhancer(generator, image_path):
    """A keyframe at frame 0 is the first frame; keyframes after it are not shown (the prompt is rewritten from
    the text alone, where Lightricks' pipelines would show the first listed keyframe)."""
    from pipelines.generate import _StageClock
    from pipelines.interface import Keyframe

    def rewrite(frame: int) -> str:
        params = small_spec(PROMPT, enhance_prompt=True, task=TASK_T2V, keyframes=(Keyframe(frame, 1.0),))
        clock = _StageClock()
        spec = generator._with_enhanced_prompt(params, None, [image_path], lambda *report: None, clock)
        assert clock.seconds["enhance_prompt"] > 0
        return spec.prompt

    enhancer = PromptEnhancer.for_pipe(generator.pipe)
    assert rewrite(0) == enhancer.enhance(PROMPT, load_image(image_path), 7)
    assert rewrite(4) == enhancer.enhance(PROMPT, None, 7)  # the image counts: test_text_to_video_rewrites...


@pytest.mark.parametrize("offload", ["text-encoder", "model"])
def test_an_offloaded_text_encoder_rewrites_the_same(generator, offload):
    """The encoder visits the device for the rewrite through its offload hooks (on the CPU the hooks run, the
    copies are no-ops): the same rewrite as a resident one."""
    options = dict(device="cpu", recipe="one-stage", num_inference_steps=2)
    offloaded = pipelines.load_generator("tiny", offload=offload, **options)
    assert f"offload {offload}" in offloaded.description
    ours = PromptEnhancer.for_pipe(offloaded.pipe, offloaded._device).enhance(PROMPT, None, 3)
    assert ours == PromptEnhancer.for_pipe(generator.pipe).enhance(PROMPT, None, 3)


def test_ltx23_rewrites_with_its_gemma3(image_path, tmp_path):
    generator = pipelines.load_generator("tiny-2.3", recipe="one-stage", num_inference_steps=2)
    result, stages = run(generator, small_spec(PROMPT, enhance_prompt=True), image_path, tmp_path / "23.mp4")
    assert result.enhanced_prompt and result.enhanced_prompt.strip() and "enhance_prompt" in result.stage_seconds
    assert stages[0] == ("enhancing_prompt", 0, 1)
