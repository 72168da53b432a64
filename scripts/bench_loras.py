"""What the user's LoRAs (``--loras DIR``) cost: the start-up load of each file, and a request with one LoRA
against the same request without, on one generator.

Usage: python scripts/bench_loras.py [--model tiny] [--loras 3] [--rank 4] [--rounds 5]
       [--width 256 --height 256 --frames 9] [--recipe two-stage]
Writes ``--loras`` random LoRAs in Lightricks' key format (every attention and feed-forward matrix of the
transformer, as LoRAs are usually trained) to a temporary folder, loads the generator with them (printing
each file's load time), then runs ``--rounds`` pairs of requests, without and with the first LoRA, in turn
(one warm-up pair first) and prints the median wall and CPU seconds of each. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from safetensors.torch import save_file  # noqa: E402

import pipelines  # noqa: E402
from pipelines.interface import LoraChoice  # noqa: E402
from pipelines.tiny import build_tiny_pipeline, random_lightricks_lora  # noqa: E402
from tests.support.pipeline_inputs import small_spec, write_noise_picture  # noqa: E402

EVERY_BLOCK_MATRIX = ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2")


def write_loras(folder: Path, count: int, rank: int) -> None:
    transformer = build_tiny_pipeline().transformer
    for index in range(count):
        lora = random_lightricks_lora(transformer, targets=EVERY_BLOCK_MATRIX, rank=rank, seed=100 + index)
        save_file(lora, folder / f"lora{index}.safetensors")


def timed_request(generator, params, image: Path, out: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, every thread's summed)."""
    start, cpu = time.perf_counter(), time.process_time()
    generator.generate(params, image, out, lambda *args: None)
    return time.perf_counter() - start, time.process_time() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--recipe", default="two-stage")
    parser.add_argument("--loras", type=int, default=3)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--frames", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "loras"
        folder.mkdir()
        write_loras(folder, args.loras, args.rank)
        start = time.perf_counter()
        generator = pipelines.load_generator(args.model, recipe=args.recipe, loras=str(folder), device="cpu")
        print(f"load_generator with {args.loras} LoRAs: {time.perf_counter() - start:.2f} s")
        for loaded in generator.user_loras.loras.values():
            print(
                f"  {loaded.name}: rank {loaded.file.rank}, {loaded.matrices} matrices, "
                f"{loaded.file.size_bytes / 1024:.0f} KiB, loaded in {loaded.load_seconds * 1000:.1f} ms"
            )
        image = write_noise_picture(Path(tmp) / "in.png")
        base = small_spec("a lighthouse at dusk", width=args.width, height=args.height, num_frames=args.frames)
        with_lora = dataclasses.replace(base, loras=(LoraChoice("lora0", 1.0),))
        times: dict[str, list[tuple[float, float]]] = {"none": [], "one LoRA": []}
        for round_index in range(args.rounds + 1):  # the first pair warms up
            for name, params in (("none", base), ("one LoRA", with_lora)):
                measured = timed_request(generator, params, image, Path(tmp) / "out.mp4")
                if round_index:
                    times[name].append(measured)
    size = f"{args.width}x{args.height}x{args.frames}"
    print(f"{args.model} {args.recipe}, {size}, median of {args.rounds}: wall s, CPU s (min-max)")
    for name, pairs in times.items():
        wall, cpu = [pair[0] for pair in pairs], [pair[1] for pair in pairs]
        print(
            f"  {name:9s} wall {statistics.median(wall):.3f} ({min(wall):.3f}-{max(wall):.3f}), "
            f"CPU {statistics.median(cpu):.3f} ({min(cpu):.3f}-{max(cpu):.3f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
