"""Time the tiny generator end to end and report per-stage seconds and peak RSS.

Usage: python scripts/bench_pipeline.py [--model tiny] [--payload default|small|all] [--repeat N]
Peak RSS is resource.getrusage's ru_maxrss for this process and, separately, its children (ffmpeg).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PAYLOADS = {
    "default": dict(width=720, height=1280, num_frames=181, fps=24, guidance_scale=4.0),
    "small": dict(width=256, height=256, num_frames=9, fps=24, guidance_scale=4.0),
}


def _peak_rss_mb() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children


def _write_test_image(path: Path) -> None:
    import numpy as np
    from PIL import Image

    gradient = np.linspace(0, 255, 640 * 480 * 3).reshape(480, 640, 3).astype("uint8")
    Image.fromarray(gradient).save(path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--payload", default="all", choices=[*PAYLOADS, "all"])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--crf", type=int, default=None, help="x264 CRF (default: the model's own)")
    args = parser.parse_args()

    start = time.perf_counter()
    import pipelines
    from pipelines.interface import JobSpec

    generator = pipelines.load_generator(args.model, x264_crf=args.crf)
    print(f"load_generator({args.model!r}): {time.perf_counter() - start:.2f} s (imports + build)")

    names = list(PAYLOADS) if args.payload == "all" else [args.payload]
    with tempfile.TemporaryDirectory() as tmp:
        image_path = Path(tmp) / "input.png"
        _write_test_image(image_path)
        for name in names:
            for attempt in range(args.repeat):
                params = JobSpec(
                    prompt="a red fox running through snow", negative_prompt="blurry", seed=42, **PAYLOADS[name]
                )
                output = Path(tmp) / f"{name}.mp4"
                begin = time.perf_counter()
                result = generator.generate(params, image_path, output, lambda *a: None)
                total = time.perf_counter() - begin
                stages = " ".join(f"{k}={v:.2f}" for k, v in result.stage_seconds.items())
                own, children = _peak_rss_mb()
                p = PAYLOADS[name]
                print(
                    f"{name} {p['width']}x{p['height']}x{p['num_frames']}@{p['fps']} run {attempt + 1}: "
                    f"total {total:.2f} s | {stages} | {output.stat().st_size / 1e6:.2f} MB | "
                    f"peak RSS self {own:.0f} MB, children {children:.0f} MB"
                )


if __name__ == "__main__":
    main()
