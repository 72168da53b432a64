"""The content policy's pieces (pipelines/moderation.py): word-list matching, the --moderation forms and their
errors, output-frame sampling from a real mp4, and what a refusal or a broken checker does to a job, in the
worker child's run_job itself."""

from __future__ import annotations

from dataclasses import replace

import pytest
from PIL import Image

from pipelines.interface import ContentBlocked, GenerationResult, JobSpec
from pipelines.moderation import (
    DEFAULT_TERMS,
    CheckerFailed,
    CheckerLoadError,
    Moderation,
    WordListChecker,
    blocked_where,
    frame_indices,
    load_checker,
    sample_frames,
    spec_problem,
)
from server.settings import settings_from_env
from server.workers import messages as msg
from server.workers.child import run_job
from tests.support.content_checkers import BrightFrames
from tests.support.fixture_generators import write_test_video

REFUSED = "contains a blocked term"
PROMPT_REFUSAL = "content blocked: prompt: contains a blocked term"


@pytest.fixture
def checker() -> WordListChecker:
    return WordListChecker(["ass", "hello world", "Straße"])


@pytest.mark.parametrize(
    "prompt",
    [
        "ASS",  # case
        "an ass, grazing",  # punctuation around a word
        "ａｓｓ in fullwidth letters",  # NFKC folds fullwidth to plain letters
        "a\u200bss split by a zero-width space",  # invisible format characters are dropped
        "HELLO   World",  # a phrase across any spacing and case
        "hello-world",
        "hello_world",
        "STRASSE",  # casefold: ß is ss
    ],
)
def test_listed_words_and_phrases_are_refused(checker, prompt):
    assert checker.check_prompt(prompt) == REFUSED


@pytest.mark.parametrize("prompt", ["a class act", "massive assets", "helloworld", "world hello", "say hello"])
def test_only_whole_words_match(checker, prompt):
    assert checker.check_prompt(prompt) is None


def test_the_built_in_list_refuses_its_terms_and_allows_ordinary_prompts():
    checker = WordListChecker()
    assert all(checker.check_prompt(f"a video of {term}") == REFUSED for term in DEFAULT_TERMS)
    assert checker.check_prompt("a child flying a kite on a beach at sunset") is None
    assert checker.check_images([Image.new("RGB", (8, 8))], "input") is None
    assert checker.inspects_images is False


def test_a_word_list_file_adds_to_the_built_in_terms(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("# our policy\n\nRed Panda\n  zebra  \n", encoding="utf-8")
    checker = load_checker(f"wordlist:{words}")
    assert isinstance(checker, WordListChecker) and checker.term_count == len(DEFAULT_TERMS) + 2
    assert checker.check_prompt("a red  panda") == REFUSED and checker.check_prompt("ZEBRA!") == REFUSED
    assert checker.check_prompt("csam") == REFUSED
    assert checker.check_prompt("our policy") is None  # comments are not terms


def test_module_factory_loads_a_checker_and_load_errors_name_the_spec():
    assert isinstance(load_checker("tests.support.content_checkers:refuse_output"), BrightFrames)
    with pytest.raises(CheckerLoadError, match="'tests.support.nope:factory'.*ModuleNotFoundError"):
        load_checker("tests.support.nope:factory")
    with pytest.raises(CheckerLoadError, match="'tests.support.content_checkers:missing'.*AttributeError"):
        load_checker("tests.support.content_checkers:missing")
    with pytest.raises(
        CheckerLoadError, match="'tests.support.content_checkers:not_a_checker'.*no check_prompt or check_images"
    ):
        load_checker("tests.support.content_checkers:not_a_checker")
    with pytest.raises(CheckerLoadError, match="'wordlist:/no/such/words.txt'.*cannot be read"):
        load_checker("wordlist:/no/such/words.txt")
    with pytest.raises(CheckerLoadError, match="'words'.*must be wordlist, wordlist:FILE or module:factory"):
        load_checker("words")


def test_the_api_process_checks_the_form_without_importing(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("zebra\n")
    for good in ("", "wordlist", f"wordlist:{words}", "some.module:factory"):
        assert spec_problem(good) is None, good
    for bad in ("wordlist:", "module:", ":factory", "a b:c", "wordlists"):
        assert spec_problem(bad), bad
    assert settings_from_env({}, moderation="some.module:factory").problems() == []  # not imported here
    assert settings_from_env({}, moderation=f"wordlist:{tmp_path / 'gone.txt'}").problems() == [
        f"moderation: the word list '{tmp_path / 'gone.txt'}' cannot be read (No such file or directory)"
    ]


def test_frame_indices_spread_from_first_to_last():
    assert frame_indices(181) == [0, 60, 120, 180]
    assert frame_indices(9) == [0, 3, 5, 8]
    assert frame_indices(2) == [0, 1] and frame_indices(1) == [0]


def test_sample_frames_decodes_the_chosen_frames_of_a_real_mp4(tmp_path):
    video = tmp_path / "clip.mp4"
    write_test_video(_spec(width=320, height=256, num_frames=25), video)
    frames = sample_frames(video, 25)
    assert len(frames) == 4 and all(frame.size == (320, 256) and frame.mode == "RGB" for frame in frames)
    assert len({frame.tobytes() for frame in frames}) == 4  # testsrc2 moves: four different frames


class _Recorder:
    def __init__(self, prompt_answer=None, image_answer=None, raises: Exception | None = None) -> None:
        self.calls: list[tuple[str, object]] = []
        self._prompt, self._image, self._raises = prompt_answer, image_answer, raises

    def check_prompt(self, prompt):
        self.calls.append(("prompt", prompt))
        if self._raises:
            raise self._raises
        return self._prompt

    def check_images(self, images, where):
        self.calls.append((where, [image.size for image in images]))
        return self._image


def test_moderation_checks_the_request_and_names_what_it_refused(tmp_path):
    image = tmp_path / "image.png"
    Image.new("RGB", (16, 8)).save(image)
    recorder = _Recorder()
    Moderation(recorder).check_request("a cat", [image, image])
    assert recorder.calls == [("prompt", "a cat"), ("input", [(16, 8), (16, 8)])]
    with pytest.raises(ContentBlocked, match="^prompt: nope$"):
        Moderation(_Recorder(prompt_answer="nope")).check_request("a cat", [image])
    with pytest.raises(ContentBlocked, match="^input image: no$"):
        Moderation(_Recorder(image_answer="no")).check_request("a cat", [image])


def test_a_refused_output_is_deleted_and_a_broken_checker_fails_closed(tmp_path):
    video = tmp_path / "clip.mp4"
    write_test_video(_spec(), video)
    Moderation(_Recorder()).check_output(video, 9)
    assert video.exists()
    with pytest.raises(ContentBlocked, match="^output video: bright$"):
        Moderation(_Recorder(image_answer="bright")).check_output(video, 9)
    assert not video.exists()

    write_test_video(_spec(), video)
    with pytest.raises(ContentBlocked, match="^enhanced prompt: rewritten badly$"):
        Moderation(_Recorder(prompt_answer="rewritten badly")).check_output(video, 9, enhanced_prompt="x")
    assert not video.exists()

    write_test_video(_spec(), video)
    broken = Moderation(_Recorder(raises=RuntimeError("model missing")))
    with pytest.raises(CheckerFailed, match=r"content checker failed on the enhanced prompt \(RuntimeError: model"):
        broken.check_output(video, 9, enhanced_prompt="x")
    assert not video.exists()  # not delivered unchecked
    with pytest.raises(CheckerFailed, match="failed on the prompt"):
        broken.check_request("a cat", [])


def test_blocked_where_labels_the_metric():
    assert blocked_where("content blocked: prompt: contains a blocked term") == "prompt"
    assert blocked_where("content blocked: enhanced prompt: x") == "prompt"
    assert blocked_where("content blocked: input image: x") == "input"
    assert blocked_where("content blocked: output video: x") == "output"
    assert blocked_where("content blocked: something else") == "other"


def _spec(width: int = 64, height: int = 64, num_frames: int = 9) -> JobSpec:
    return JobSpec(
        prompt="", negative_prompt="", width=width, height=height, num_frames=num_frames, fps=8, seed=0,
        guidance_scale=1,
    )  # fmt: skip


class _RewritingGenerator:
    """Writes a real test video and reports a rewritten prompt, as a generator with enhance_prompt does."""

    def __init__(self, rewritten: str) -> None:
        self.rewritten = rewritten
        self.calls = 0

    def generate(self, params, image_path, output_path, on_progress, keyframe_paths=()):
        self.calls += 1
        write_test_video(params, output_path)
        return GenerationResult(output_path=output_path, seed=params.seed, enhanced_prompt=self.rewritten)


class _Pipe:
    def __init__(self) -> None:
        self.sent: list[object] = []

    def send(self, message: object) -> None:
        self.sent.append(message)


def _submit(tmp_path, prompt: str) -> msg.SubmitJob:
    image = tmp_path / "image.png"
    Image.new("RGB", (64, 64)).save(image)
    spec = replace(_spec(), prompt=prompt)
    return msg.SubmitJob(job_id="j", image_path=str(image), output_path=str(tmp_path / "out.mp4"), spec=spec)


def test_the_worker_child_refuses_before_generating_and_checks_the_rewritten_prompt_after(tmp_path):
    moderation = Moderation(WordListChecker(["zebra"]))
    generator = _RewritingGenerator("a zebra at dawn")

    refused = run_job(generator, _submit(tmp_path, "ZEBRA"), _Pipe(), moderation=moderation)
    assert refused == msg.JobFailed(job_id="j", error=PROMPT_REFUSAL, fault=msg.FAULT_CONTENT)
    assert generator.calls == 0  # nothing generated for a refused request

    rewritten = run_job(generator, _submit(tmp_path, "a horse"), _Pipe(), moderation=moderation)
    assert rewritten == msg.JobFailed(
        job_id="j", error="content blocked: enhanced prompt: contains a blocked term", fault=msg.FAULT_CONTENT
    )
    assert generator.calls == 1 and not (tmp_path / "out.mp4").exists()

    generator.rewritten = "a horse at dawn"
    done = run_job(generator, _submit(tmp_path, "a horse"), _Pipe(), moderation=moderation)
    assert isinstance(done, msg.JobSucceeded) and done.enhanced_prompt == "a horse at dawn"
    assert (tmp_path / "out.mp4").exists()

    broken = run_job(generator, _submit(tmp_path, "explode"), _Pipe(), moderation=Moderation(BrightFrames()))
    assert broken == msg.JobFailed(
        job_id="j", error="the content checker failed on the prompt (RuntimeError: the checker broke on purpose)"
    )
    assert broken.fault == msg.FAULT_GENERATION
