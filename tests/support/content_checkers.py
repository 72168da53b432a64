"""Content checkers for the --moderation tests, loaded by the worker child as
``--moderation tests.support.content_checkers:<factory>``."""

from __future__ import annotations

import numpy as np

# testsrc2's frames are bright: a mean over this refuses any frame of the scripted generator's videos.
BRIGHTNESS_LIMIT = 40.0


class BrightFrames:
    """Refuses output frames whose mean brightness is over BRIGHTNESS_LIMIT (a stand-in for an image
    classifier's score) and allows input images, so a test sees the output path alone; raises on prompts
    containing "explode", as a checker that breaks."""

    def check_prompt(self, prompt: str) -> str | None:
        if "explode" in prompt:
            raise RuntimeError("the checker broke on purpose")
        return None

    def check_images(self, images, where: str) -> str | None:
        if where != "output":
            return None
        brightness = max(float(np.asarray(image.convert("L")).mean()) for image in images)
        return f"too bright ({brightness:.0f} > {BRIGHTNESS_LIMIT:.0f})" if brightness > BRIGHTNESS_LIMIT else None


def refuse_output() -> BrightFrames:
    return BrightFrames()


def not_a_checker() -> object:
    return object()


# The input picture MarkedInputs refuses, by its size: any other picture passes.
MARKED_SIZE = (48, 48)


class MarkedInputs:
    """Refuses input images of MARKED_SIZE (a stand-in for a classifier's verdict on one picture) and looks
    at nothing else: ``inspects_images`` stays on, so output frames are decoded and shown to it too."""

    def check_prompt(self, prompt: str) -> str | None:
        return None

    def check_images(self, images, where: str) -> str | None:
        if where == "input" and any(image.size == MARKED_SIZE for image in images):
            return "the marked picture"
        return None


def refuse_marked_inputs() -> MarkedInputs:
    return MarkedInputs()
