"""A fixture generator that answers ``enhance_prompt`` the way the real recipes do (the rewritten prompt in the
result), without a text encoder: for the browser tests of the result view."""

from __future__ import annotations

from dataclasses import replace

from pipelines.interface import GenerationResult
from tests.support.fixture_generators import FastGenerator

ENHANCED_SUFFIX = ", in warm evening light, the camera slowly pushing in"


class EnhancingGenerator(FastGenerator):
    def generate(self, params, image_path, output_path, on_progress, keyframe_paths=()) -> GenerationResult:
        result = super().generate(params, image_path, output_path, on_progress, keyframe_paths)
        if not params.enhance_prompt:
            return result
        return replace(result, enhanced_prompt=params.prompt + ENHANCED_SUFFIX)


def enhancing() -> EnhancingGenerator:
    return EnhancingGenerator()
