"""Benchmark throughput with one worker against several on the same host (``--gpus``), or one worker with
and without the overlap of a job's mux with the next job's denoising (``--overlap``).

Usage: python scripts/bench_workers.py [--model tiny] [--jobs 30] [--width 256 --height 256 --frames 9]
       [--configs "cpu:1" "cpu:2" "cpu:2 --worker-threads 2"]
       python scripts/bench_workers.py --overlap [--gpus cpu:1]   # --overlap-mux off, then on
Starts `ltx2-server serve --gpus ...` itself for each configuration (a configuration is --gpus's value,
then any further serve flags), waits for every worker to load, runs one warm-up job per worker, then
submits all jobs at once and times them until the last is final. Prints one table. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.servers import cli_server, png_data_uri  # noqa: E402

SLUG = "ltx-2-19b-i2v"


def wait_all_workers_ready(client: httpx.Client, base_url: str, timeout: float = 600) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = client.get(f"{base_url}/ready").json()["workers"]
        if all(worker["state"] == "ready" for worker in workers):
            return workers
        time.sleep(0.2)
    raise TimeoutError("the workers did not all load")


def run_job(client: httpx.Client, base_url: str, body: dict) -> dict:
    """One job through the blocking /v1 route: no polling, so the client costs the 2 cores nothing
    while it waits."""
    response = client.post(f"{base_url}/v1/{SLUG}", json=body)
    completed = response.status_code == 200
    return {
        "status": "COMPLETED" if completed else "FAILED",
        "inference_time": float(response.headers.get("x-generation-time", 0)) if completed else 0.0,
    }


def run_batch(base_url: str, body: dict, jobs: int) -> tuple[float, list[dict]]:
    """Submit ``jobs`` at once (one client thread each) and time until the last is final."""
    with httpx.Client(timeout=600) as client, ThreadPoolExecutor(max_workers=jobs) as pool:
        started = time.monotonic()
        finals = list(pool.map(lambda _: run_job(client, base_url, body), range(jobs)))
        return time.monotonic() - started, finals


def bench(config: str, model: str, body: dict, jobs: int) -> dict:
    with cli_server("--model", model, "--gpus", *config.split(), ready_timeout=600) as (base_url, _):
        with httpx.Client(timeout=60) as client:
            workers = wait_all_workers_ready(client, base_url)
        run_batch(base_url, body, len(workers))  # warm-up: every worker runs once
        seconds, finals = run_batch(base_url, body, jobs)
    failed = sum(1 for final in finals if final["status"] != "COMPLETED")
    per_job = [final["inference_time"] for final in finals]
    return {
        "config": config,
        "workers": len(workers),
        "seconds": seconds,
        "jobs_per_minute": 60 * jobs / seconds,
        "per_job": statistics.median(per_job),
        "failed": failed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--configs", nargs="+", default=["cpu:1", "cpu:2", "cpu:2 --worker-threads 2"])
    parser.add_argument("--repeat", type=int, default=1, help="rounds over the configs; each row keeps its best")
    parser.add_argument(
        "--overlap", action="store_true", help="compare --overlap-mux off with on, on --gpus (not --configs)"
    )
    parser.add_argument("--gpus", default="cpu:1", help="the workers --overlap compares with")
    args = parser.parse_args()
    if args.overlap:
        args.configs = [f"{args.gpus} --overlap-mux off", f"{args.gpus} --overlap-mux on"]
    body = {
        "image": png_data_uri(args.width, args.height),
        "prompt": "a lighthouse in a storm",
        "width": args.width,
        "height": args.height,
        "num_frames": args.frames,
        "fps": 24,
        "seed": 1,
    }
    print(f"{args.jobs} jobs of {args.width}x{args.height}, {args.frames} frames, model {args.model}, "
          f"{os.cpu_count()} CPU cores")  # fmt: skip
    best: dict[str, dict] = {}
    # Rounds interleave the configs, so a burst of other load on the host does not hit one config only.
    for _ in range(args.repeat):
        for config in args.configs:
            load = os.getloadavg()[0]
            row = bench(config, args.model, body, args.jobs)
            print(f"  {config}: {row['jobs_per_minute']:.1f} jobs/min (load average before: {load:.2f})")
            if config not in best or row["jobs_per_minute"] > best[config]["jobs_per_minute"]:
                best[config] = row
    rows = [best[config] for config in args.configs]
    baseline = rows[0]["jobs_per_minute"]
    print("| serve flags | workers | jobs/min | vs first | median s/job | wall s | failed |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| `{row['config']}` | {row['workers']} | {row['jobs_per_minute']:.1f} | "
            f"{row['jobs_per_minute'] / baseline:.2f}x | {row['per_job']:.2f} | {row['seconds']:.1f} | "
            f"{row['failed']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
