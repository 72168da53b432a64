"""The content policy (``--moderation``): a checker the worker child asks about each job's prompt and input
images before generating, and about a few frames of the finished video after; a refusal fails the job with
``content blocked: <what>: <reason>``.

A checker is anything with ``check_prompt`` and ``check_images`` (``ContentChecker``). ``wordlist`` is the
built-in one: a short list of terms matched as whole words in the prompt, offline and without a download;
``wordlist:FILE`` adds the terms of FILE; ``module:factory`` calls ``factory()`` from an importable module.

Torch-free at import: the API process reads ``spec_problem`` to check the option at start-up (without
importing the operator's module, which may import torch), and ``blocked_where`` to label /metrics.
"""

from __future__ import annotations

import importlib
import re
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from .interface import ContentBlocked, InvalidInputError

if TYPE_CHECKING:
    from PIL.Image import Image

WORDLIST = "wordlist"
# What a refusal was about, the first words of its reason: the job's error reads "content blocked: prompt: ...".
PROMPT, ENHANCED_PROMPT, INPUT_IMAGE, OUTPUT_VIDEO = "prompt", "enhanced prompt", "input image", "output video"
BLOCKED_PREFIX = "content blocked: "
# check_images' ``where``
INPUT, OUTPUT = "input", "output"
# Frames of the finished video shown to a checker that inspects images, evenly spaced from the first to the last.
OUTPUT_SAMPLES = 4

# The built-in list: sexual content involving minors and non-consensual sexual imagery, named plainly. Short
# on purpose: a floor every deployment wants, not a policy; operators add their own terms with wordlist:FILE.
DEFAULT_TERMS = (
    "child sexual abuse",
    "child sexual abuse material",
    "csam",
    "child porn",
    "child pornography",
    "underage sex",
    "underage nude",
    "underage nudity",
    "sexualized minor",
    "sexualized minors",
    "minor nude",
    "minors nude",
    "non-consensual porn",
    "nonconsensual porn",
    "revenge porn",
)

_MODULE_FACTORY = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
FORMS = "wordlist, wordlist:FILE or module:factory"


class ContentChecker(Protocol):
    """A content policy. Each method answers None to allow, else the reason of the refusal (shown to the user
    after "content blocked: "). Calls come from one worker process, one at a time. A checker that never looks
    at images may set ``inspects_images = False``, which spares the worker decoding output frames for it."""

    def check_prompt(self, prompt: str) -> str | None: ...

    def check_images(self, images: list[Image], where: str) -> str | None:
        """``where`` is "input" (the request's image and keyframes) or "output" (frames of the finished video)."""
        ...


class CheckerLoadError(Exception):
    """--moderation names a checker that cannot be loaded; the message names the option's value."""


class CheckerFailed(Exception):
    """The checker raised instead of answering: the job fails (as a generation error), the worker goes on."""


def normalise(text: str) -> str:
    """Compatibility-folded (fullwidth and styled letters to plain ones), case-folded, with invisible
    format characters (zero-width spaces and joiners, soft hyphens) removed, so they cannot split a word."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    if folded.isascii():
        return folded  # no format characters to drop (the common case, and a per-character pass saved)
    return "".join(char for char in folded if unicodedata.category(char) != "Cf")


_WORD = re.compile(r"[^\W_]+")  # letters and digits: anything else (spaces, punctuation, "_") separates words


def _words(text: str) -> str:
    """The text's words, normalised, each with one space before and after: " child porn " for "Child-PORN"."""
    return " " + " ".join(_WORD.findall(normalise(text))) + " "


class WordListChecker:
    """Refuses prompts containing a listed word or phrase: case-insensitive, Unicode-normalised, whole words
    only ("class" does not match "ass"), and a phrase's words match across any spaces or punctuation between
    them ("child-porn", "child  porn"). Allows every image."""

    inspects_images = False

    def __init__(self, terms: Iterable[str] = DEFAULT_TERMS) -> None:
        self._terms = tuple(sorted({words for words in map(_words, terms) if words.strip()}))
        self.term_count = len(self._terms)

    def check_prompt(self, prompt: str) -> str | None:
        words = _words(prompt)
        if any(term in words for term in self._terms):
            return "contains a blocked term"
        return None

    def check_images(self, images: list[Image], where: str) -> str | None:
        return None


def read_word_list(path: Path) -> list[str]:
    """One term or phrase per line (UTF-8); blank lines and lines starting with # are skipped."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def spec_problem(spec: str) -> str | None:
    """What is wrong with a --moderation value, checked without importing anything ("" is no checker)."""
    if spec in ("", WORDLIST):
        return None
    if spec.startswith(WORDLIST + ":"):
        path = Path(spec[len(WORDLIST) + 1 :])
        try:
            read_word_list(path)
        except (OSError, UnicodeDecodeError) as exc:
            return f"the word list {str(path)!r} cannot be read ({getattr(exc, 'strerror', None) or exc})"
        return None
    if not _MODULE_FACTORY.match(spec):
        return f"must be {FORMS}; got {spec!r}"
    return None


def load_checker(spec: str) -> ContentChecker:
    """The checker ``spec`` names; CheckerLoadError (naming ``spec``) when it cannot be had."""
    problem = spec_problem(spec)
    if problem or not spec:
        raise CheckerLoadError(f"--moderation {spec!r}: {problem or 'names no checker'}")
    if spec == WORDLIST:
        return WordListChecker()
    if spec.startswith(WORDLIST + ":"):
        return WordListChecker([*DEFAULT_TERMS, *read_word_list(Path(spec[len(WORDLIST) + 1 :]))])
    module_name, factory_name = spec.split(":", 1)
    try:
        factory = getattr(importlib.import_module(module_name), factory_name)
        checker = factory()
    except Exception as exc:  # noqa: BLE001 - any failure is the operator's to fix: say which and why
        raise CheckerLoadError(f"--moderation {spec!r}: {type(exc).__name__}: {exc}") from exc
    missing = [name for name in ("check_prompt", "check_images") if not callable(getattr(checker, name, None))]
    if missing:
        raise CheckerLoadError(f"--moderation {spec!r}: the checker has no {' or '.join(missing)} method")
    return checker


def blocked_where(error: str) -> str:
    """prompt, input or output: what a "content blocked: ..." error refused (its /metrics label)."""
    subject = error.removeprefix(BLOCKED_PREFIX)
    if subject.startswith((PROMPT, ENHANCED_PROMPT)):
        return "prompt"
    if subject.startswith(INPUT_IMAGE):
        return INPUT
    if subject.startswith(OUTPUT_VIDEO):
        return OUTPUT
    return "other"


def frame_indices(num_frames: int, samples: int = OUTPUT_SAMPLES) -> list[int]:
    """``samples`` frame indices spread evenly from the first frame to the last (fewer for a short clip)."""
    if num_frames <= 1 or samples <= 1:
        return [0]
    return sorted({round(i * (num_frames - 1) / (samples - 1)) for i in range(samples)})


def sample_frames(video: Path, num_frames: int, samples: int = OUTPUT_SAMPLES) -> list[Image]:
    """The frames at ``frame_indices`` of an mp4, decoded by ffmpeg (the one imageio-ffmpeg ships), which
    passes on only the selected ones."""
    import imageio_ffmpeg
    from PIL import Image as PILImage

    chosen = "+".join(f"eq(n\\,{index})" for index in frame_indices(num_frames, samples))
    reader = imageio_ffmpeg.read_frames(
        str(video), input_params=["-an"], output_params=["-vf", f"select={chosen}", "-fps_mode", "passthrough"]
    )
    try:
        width, height = next(reader)["size"]
        return [PILImage.frombytes("RGB", (width, height), bytes(frame)) for frame in reader]
    finally:
        reader.close()


class Moderation:
    """A loaded checker as the worker child uses it: each ``check_*`` raises ContentBlocked with the reason
    ("prompt: contains a blocked term"), or CheckerFailed when the checker itself raised. One check at a time:
    with --overlap-mux on, a job's output check and the next job's request check may overlap."""

    def __init__(self, checker: ContentChecker) -> None:
        self.checker = checker
        self._lock = threading.Lock()

    @property
    def inspects_images(self) -> bool:
        return bool(getattr(self.checker, "inspects_images", True))

    def check_request(self, prompt: str, images: Sequence[Path]) -> None:
        """Before generating: the prompt, then the input images (none for text-to-video)."""
        self._refuse_if(PROMPT, lambda: self.checker.check_prompt(prompt))
        if images and self.inspects_images:
            opened = _open_images(images)
            self._refuse_if(INPUT_IMAGE, lambda: self.checker.check_images(opened, INPUT))

    def check_output(self, video: Path, num_frames: int, enhanced_prompt: str | None = None) -> None:
        """After generating: the rewritten prompt (if any) and sampled frames; a refused video is deleted."""
        try:
            if enhanced_prompt:
                self._refuse_if(ENHANCED_PROMPT, lambda: self.checker.check_prompt(enhanced_prompt))
            if self.inspects_images:
                frames = sample_frames(video, num_frames)
                self._refuse_if(OUTPUT_VIDEO, lambda: self.checker.check_images(frames, OUTPUT))
        except BaseException:
            video.unlink(missing_ok=True)
            raise

    def _refuse_if(self, subject: str, check) -> None:
        with self._lock:
            try:
                reason = check()
            except Exception as exc:  # noqa: BLE001 - a broken checker fails the job, never the worker
                raise CheckerFailed(
                    f"the content checker failed on the {subject} ({type(exc).__name__}: {exc})"
                ) from exc
        if reason is not None:
            raise ContentBlocked(f"{subject}: {reason or 'refused'}")


def _open_images(paths: Sequence[Path]) -> list[Image]:
    from PIL import Image as PILImage

    images = []
    for path in paths:
        try:
            with PILImage.open(path) as image:
                images.append(image.convert("RGB"))
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"image: cannot be decoded ({type(exc).__name__})") from None
    return images
