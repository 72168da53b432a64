"""CPU cost per request of the content policy (--moderation): the word-list check and the output-frame sampling.

Usage: python scripts/bench_moderation.py [--repeat 3]
Times the built-in word list on prompts of 200, 2,000 and 10,000 characters (plain ASCII, and with fullwidth
letters, which take the slower normalisation path), and the decoding of the four output frames a checker that
inspects images is shown, on real mp4s (ffmpeg's test picture, x264) of the small, a mid and the default size.
Prints the best of --repeat runs. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.interface import JobSpec  # noqa: E402
from pipelines.moderation import WordListChecker, sample_frames  # noqa: E402
from tests.support.fixture_generators import write_test_video  # noqa: E402

SENTENCES = {
    "ASCII": "A bright sunny afternoon in a backyard, full-body shot of a young woman who smiles. ",
    "fullwidth": "A bright sunny afternoon in a backyard, ＦＵＬＬ-body shot of a young woman who smiles. ",
}
PROMPT_CHARS = (200, 2_000, 10_000)
VIDEOS = ((256, 256, 9), (768, 512, 121), (720, 1280, 181))


def word_list_rows(repeat: int) -> list[str]:
    checker = WordListChecker()
    rows = []
    for chars in PROMPT_CHARS:
        for kind, sentence in SENTENCES.items():
            prompt = (sentence * (chars // len(sentence) + 1))[:chars]
            calls = 200
            best = (
                min(timeit.repeat(lambda prompt=prompt: checker.check_prompt(prompt), number=calls, repeat=repeat))
                / calls
            )
            rows.append(f"| word list | {chars:,}-character prompt, {kind} | {best * 1e6:,.0f} µs |")
    return rows


def frame_rows(repeat: int) -> list[str]:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for width, height, frames in VIDEOS:
            spec = JobSpec(
                prompt="", negative_prompt="", width=width, height=height, num_frames=frames, fps=24, seed=0,
                guidance_scale=1,
            )  # fmt: skip
            video = Path(folder) / f"{width}x{height}x{frames}.mp4"
            write_test_video(spec, video)
            best = min(
                timeit.repeat(lambda video=video, frames=frames: sample_frames(video, frames), number=1, repeat=repeat)
            )
            rows.append(f"| 4 output frames decoded | {width}x{height}, {frames} frames | {best * 1e3:,.0f} ms |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement; the best is printed")
    args = parser.parse_args()
    print("| step | input | CPU time per request |")
    print("|---|---|---|")
    for row in [*word_list_rows(args.repeat), *frame_rows(args.repeat)]:
        print(row, flush=True)


if __name__ == "__main__":
    main()
