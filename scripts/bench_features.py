"""What each request field beyond Segmind's costs per request: image-to-video as the baseline, then text-to-video,
one and two keyframes, one LoRA, prompt enhancement, and the word-list content check, on one generator.

Usage: python scripts/bench_features.py [--model tiny] [--width 256 --height 256 --frames 33] [--rounds 5]
       [--recipe two-stage] [--threads 1] [--json FILE]
Each variant runs ``--rounds`` times in turn with the others (after one warm-up round of all) and its median
CPU seconds (of this process, on ``--threads`` torch threads: steadier than wall time on a busy host; ffmpeg's
encode is not counted) and wall seconds are printed beside the difference from the baseline. The tiny model's
figures show the overhead of each feature's own work (its denoising costs nearly nothing); on the full model
the keyframe tokens and the enhancer's text generation scale with the model. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pipelines  # noqa: E402
from pipelines.interface import TASK_T2V, JobSpec, Keyframe, LoraChoice  # noqa: E402
from pipelines.moderation import load_checker  # noqa: E402
from tests.support.lora_files import write_tiny_lora_file  # noqa: E402
from tests.support.pipeline_inputs import small_spec, write_noise_picture  # noqa: E402


def variants(base: JobSpec) -> dict[str, JobSpec]:
    middle, last = base.num_frames // 2, base.num_frames - 1
    return {
        "image-to-video (baseline)": base,
        "text-to-video": dataclasses.replace(base, task=TASK_T2V),
        "+1 keyframe": dataclasses.replace(base, keyframes=(Keyframe(middle, 0.8),)),
        "+2 keyframes": dataclasses.replace(base, keyframes=(Keyframe(middle, 0.8), Keyframe(last, 1.0))),
        "+1 LoRA": dataclasses.replace(base, loras=(LoraChoice("bench", 0.8),)),
        "+enhance_prompt": dataclasses.replace(base, enhance_prompt=True),
    }


def run_once(generator, spec: JobSpec, picture: Path, out: Path) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one request."""
    image = None if spec.task == TASK_T2V else picture
    keyframes = [picture] * len(spec.keyframes)
    cpu, wall = time.process_time(), time.perf_counter()
    generator.generate(spec, image, out, lambda *args: None, keyframe_paths=keyframes)
    return time.process_time() - cpu, time.perf_counter() - wall


def word_list_seconds(prompt: str, rounds: int = 1000) -> float:
    checker = load_checker("wordlist")
    started = time.perf_counter()
    for _ in range(rounds):
        checker.check_prompt(prompt)
    return (time.perf_counter() - started) / rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--recipe", default="two-stage")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--frames", type=int, default=33)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ltx2-bench-features-") as scratch:
        folder = Path(scratch)
        write_tiny_lora_file(folder / "loras" / "bench.safetensors")
        picture = write_noise_picture(folder / "picture.png")
        generator = pipelines.load_generator(
            args.model, recipe=args.recipe, loras=str(folder / "loras"), device="cpu", x264_preset="ultrafast",
            num_threads=args.threads,
        )
        base = small_spec("a lighthouse at dusk", width=args.width, height=args.height)
        base = dataclasses.replace(base, num_frames=args.frames)
        specs = variants(base)
        seconds: dict[str, list[tuple[float, float]]] = {name: [] for name in specs}
        for round_index in range(args.rounds + 1):
            for name, spec in specs.items():
                took = run_once(generator, spec, picture, folder / "out.mp4")
                if round_index:  # the first round warms every path up
                    seconds[name].append(took)
    cpu = {name: statistics.median(c for c, _ in values) for name, values in seconds.items()}
    wall = {name: statistics.median(w for _, w in values) for name, values in seconds.items()}
    base_cpu, base_wall = cpu["image-to-video (baseline)"], wall["image-to-video (baseline)"]
    print(f"{args.model} {args.recipe}, {args.width}x{args.height}x{args.frames}, {args.threads} thread(s), "
          f"median of {args.rounds}: CPU s (vs baseline), wall s (vs baseline)")  # fmt: skip
    for name in specs:
        cpu_text = f"{cpu[name]:6.2f} ({cpu[name] - base_cpu:+.2f})"
        print(f"  {name:28s} {cpu_text}   {wall[name]:6.2f} ({wall[name] - base_wall:+.2f})")
    check = word_list_seconds(base.prompt)
    print(f"  {'word-list content check':28s} {check * 1e6:7.1f} us per prompt")
    if args.json:
        figures = {"cpu_seconds": cpu, "wall_seconds": wall, "word_list_seconds": check}
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
