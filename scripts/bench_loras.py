"""What the user's LoRAs (``--loras DIR``) cost: the start-up load of each file, and a request with one LoRA
against the same request without, on one generator.

Usage: python scripts/bench_loras.py [--model tiny] [--loras 3] [--rank 4] [--rounds 5]
       [--width 256 --height 256 --frames 9] [--recipe two-stage] [--threads 1]
Writes ``--loras`` random LoRAs in Lightricks' key format (every attention and feed-forward matrix of the
transformer, as LoRAs are usually trained) to a temporary folder, loads the generator with them (printing
each file's load time), then runs ``--rounds`` pairs of requests, without and with the first LoRA, in turn
(one warm-up pair first) and prints the median wall and CPU seconds of each, and of its denoising stages
(where a LoRA costs anything). Figures, not assertions.
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


DENOISING_STAGES = ("denoise", "stage1", "stage2")  # where a LoRA's side matmuls run


def timed_request(generator, params, image: Path, out: Path) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds of this process with every thread's summed, the denoising stages' seconds)."""
    start, cpu = time.perf_counter(), time.process_time()
    result = generator.generate(params, image, out, lambda *args: None)
    denoising = sum(result.stage_seconds.get(stage, 0.0) for stage in DENOISING_STAGES)
    return time.perf_counter() - start, time.process_time() - cpu, denoising


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


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
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadier on a busy host)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "loras"
        folder.mkdir()
        write_loras(folder, args.loras, args.rank)
        start = time.perf_counter()
        generator = pipelines.load_generator(
            args.model, recipe=args.recipe, loras=str(folder), device="cpu", num_threads=args.threads
        )
        print(f"load_generator with {args.loras} LoRAs: {time.perf_counter() - start:.2f} s")
        for loaded in generator.user_loras.loras.values():
            print(
                f"  {loaded.name}: rank {loaded.file.rank}, {loaded.matrices} matrices, "
                f"{loaded.file.size_bytes / 1024:.0f} KiB, loaded in {loaded.load_seconds * 1000:.1f} ms"
            )
        image = write_noise_picture(Path(tmp) / "in.png")
        base = small_spec("a lighthouse at dusk", width=args.width, height=args.height, num_frames=args.frames)
        with_lora = dataclasses.replace(base, loras=(LoraChoice("lora0", 1.0),))
        times: dict[str, list[tuple[float, float, float]]] = {"none": [], "one LoRA": []}
        for round_index in range(args.rounds + 1):  # the first pair warms up
            for name, params in (("none", base), ("one LoRA", with_lora)):
                measured = timed_request(generator, params, image, Path(tmp) / "out.mp4")
                if round_index:
                    times[name].append(measured)
    size = f"{args.width}x{args.height}x{args.frames}"
    print(f"{args.model} {args.recipe}, {size}, {args.threads} thread(s), {args.rounds} rounds: median (min-max) s")
    for name, rows in times.items():
        columns = {
            "wall": [row[0] for row in rows],
            "CPU": [row[1] for row in rows],
            "denoising": [row[2] for row in rows],
        }
        print(f"  {name:9s}", ", ".join(f"{label} {_spread(values)}" for label, values in columns.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
