"""Peak and settled RSS of the API process while many large image URLs are fetched at once.

Usage: python scripts/bench_fetch_memory.py [--concurrent 30] [--megabytes 20] [--limits 8,30]
       [--store memory|redis]
Serves one PNG of about --megabytes MB from loopback, starts `ltx2-server serve` with the fast
fixture generator once per value of --limits (its --max-image-fetches), submits --concurrent jobs
with that URL at once and prints: accepted, refused with 429, the API's RSS before, at its peak
and 5 s after the jobs ended. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import threading
import time
from pathlib import Path

import httpx
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_load import FAST_MODEL, server_under_test  # noqa: E402

from tests.support.load import RssSampler, rss_bytes  # noqa: E402
from tests.support.servers import image_host  # noqa: E402

MIB = 1024 * 1024


def noise_png(megabytes: float) -> bytes:
    """Random pixels do not compress: the PNG is about width * height * 3 bytes."""
    side = int((megabytes * 1_000_000 / 3) ** 0.5)
    image = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def submit_all(base_url: str, url: str, count: int) -> list[httpx.Response]:
    answers: list[httpx.Response] = []
    barrier = threading.Barrier(count)

    def one() -> None:
        body = {"image": url, "prompt": "memory", "width": 256, "height": 256, "num_frames": 9, "fps": 8}
        barrier.wait()
        answers.append(httpx.post(f"{base_url}/v2/ltx-2-19b-i2v", json=body, timeout=120))

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def wait_all_final(answers: list[httpx.Response], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    for answer in answers:
        if answer.status_code != 200:
            continue
        while time.monotonic() < deadline:
            if httpx.get(answer.json()["status_url"], timeout=30).json()["status"] in ("COMPLETED", "FAILED"):
                break
            time.sleep(0.2)


def measure(store: str, url: str, size: int, concurrent: int, limit: int) -> None:
    args = ("--model", FAST_MODEL, "--max-queue", str(concurrent * 2), "--max-image-fetches", str(limit))
    with server_under_test(store, args) as (base_url, process):
        before = rss_bytes(process.pid)
        with RssSampler(process.pid) as sampler:
            answers = submit_all(base_url, url, concurrent)
            wait_all_final(answers)
        time.sleep(5)
        after = rss_bytes(process.pid)
    codes = [answer.status_code for answer in answers]
    print(
        f"store={store} --max-image-fetches {limit}: {concurrent} concurrent fetches of {size / MIB:.1f} MiB: "
        f"accepted {codes.count(200)}, 429 {codes.count(429)}, other {len(codes) - codes.count(200) - codes.count(429)}; "
        f"API RSS before {before / MIB:.0f} MiB, peak {sampler.peak / MIB:.0f} MiB, 5 s after {after / MIB:.0f} MiB",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrent", type=int, default=30)
    parser.add_argument("--megabytes", type=float, default=20.0)
    parser.add_argument("--limits", default="8,30", help="values of --max-image-fetches to measure, comma-separated")
    parser.add_argument("--store", choices=("memory", "redis"), default="memory")
    args = parser.parse_args()
    png = noise_png(args.megabytes)
    with image_host({"/big.png": (200, "image/png", png)}) as host_url:
        for limit in (int(value) for value in args.limits.split(",")):
            measure(args.store, f"{host_url}/big.png", len(png), args.concurrent, limit)


if __name__ == "__main__":
    main()
