"""Benchmark the scale-out setup (``--store redis://``) on loopback: real redis-server, API replicas
and worker hosts as processes, as the tests start them.

Usage: python scripts/bench_scale_out.py [--jobs 30] [--polls 1000] [--submits 200] [--kills 3]
Prints three tables; figures, not assertions:
1. submit and poll latency through Redis against the in-memory store (same fast test generator);
2. jobs per minute with 1 and 2 worker hosts on the tiny model (256x256, 9 frames);
3. redelivery delay after SIGKILL of the worker host running a job (visibility timeout 5 s).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.scale_out import Cluster, host_pid  # noqa: E402
from tests.support.servers import cli_server, png_data_uri  # noqa: E402

SLUG = "ltx-2-19b-i2v"
FAST = "tests.support.fixture_generators:fast"
SMALL = {"width": 256, "height": 256, "num_frames": 9}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def wait_final(client: httpx.Client, api: str, job_id: str, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"{api}/v2/requests/{job_id}/status").json()
        if body["status"] in ("COMPLETED", "FAILED"):
            return body
        time.sleep(0.05)
    raise TimeoutError(job_id)


def latencies(api: str, submits: int, polls: int) -> dict[str, float]:
    """Sequential submissions, then sequential polls of one job: the store's cost per request."""
    body = {"image": png_data_uri(), "prompt": "bench", **SMALL}
    with httpx.Client(timeout=60) as client:
        for _ in range(5):  # warm-up
            client.post(f"{api}/v2/{SLUG}", json=body)
        submit_ms, ids = [], []
        for _ in range(submits):
            started = time.perf_counter()
            response = client.post(f"{api}/v2/{SLUG}", json=body)
            submit_ms.append((time.perf_counter() - started) * 1000)
            ids.append(response.json()["request_id"])
        for job_id in ids:
            wait_final(client, api, job_id)
        poll_ms = []
        for _ in range(polls):
            started = time.perf_counter()
            client.get(f"{api}/v2/requests/{ids[-1]}/status")
            poll_ms.append((time.perf_counter() - started) * 1000)
    return {
        "submit p50": statistics.median(submit_ms),
        "submit p99": percentile(submit_ms, 0.99),
        "poll p50": statistics.median(poll_ms),
        "poll p99": percentile(poll_ms, 0.99),
    }


def jobs_per_minute(api: str, jobs: int) -> float:
    body = {"image": png_data_uri(), "prompt": "a lighthouse", **SMALL}
    with httpx.Client(timeout=600) as client:
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            ids = list(pool.map(lambda _: client.post(f"{api}/v2/{SLUG}", json=body).json()["request_id"], range(jobs)))
        finals = [wait_final(client, api, job_id) for job_id in ids]
        elapsed = time.monotonic() - started
    assert all(final["status"] == "COMPLETED" for final in finals)
    return jobs / elapsed * 60


def redelivery_delays(cluster: Cluster, api: str, kills: int) -> list[tuple[float, float]]:
    """(seconds from the kill until another worker took the job, until it COMPLETED), per kill."""
    client_redis = cluster.redis.client()
    delays = []
    body = {"image": png_data_uri(), "prompt": "scripted:steps", **SMALL}
    with httpx.Client(timeout=60) as client:
        for _ in range(kills):
            cluster.wait_for_workers(2)
            job_id = client.post(f"{api}/v2/{SLUG}", json=body).json()["request_id"]
            while client.get(f"{api}/v2/requests/{job_id}/status").json()["status"] != "PROCESSING":
                time.sleep(0.02)
            os.kill(host_pid(client_redis.hget(f"ltx2:job:{job_id}", "worker")), signal.SIGKILL)
            killed = time.monotonic()
            while client_redis.hget(f"ltx2:job:{job_id}", "attempt") != "2":
                time.sleep(0.02)
            taken = time.monotonic() - killed
            wait_final(client, api, job_id)
            delays.append((taken, time.monotonic() - killed))
            cluster.start_worker("--visibility-timeout", "5")
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--submits", type=int, default=200)
    parser.add_argument("--polls", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ltx2-bench-scale-"))

    print("1. submit and poll latency (ms), fast test generator, one client, sequential requests")
    with cli_server("--model", FAST, "--max-queue", "1000") as (api, _):
        memory = latencies(api, args.submits, args.polls)
    with Cluster(root / "latency", model=FAST, extra=("--max-queue", "1000")) as cluster:
        cluster.start_worker()
        redis = latencies(cluster.start_api(), args.submits, args.polls)
    print(f"{'store':<8} " + " ".join(f"{name:>11}" for name in memory))
    for name, figures in (("memory", memory), ("redis", redis)):
        print(f"{name:<8} " + " ".join(f"{value:>11.2f}" for value in figures.values()))

    print(f"\n2. jobs per minute, tiny model, {args.jobs} jobs of 256x256x9, one torch thread per worker")
    for hosts in (1, 2):
        with Cluster(root / f"hosts-{hosts}", model="tiny", extra=("--max-queue", "1000")) as cluster:
            for _ in range(hosts):
                cluster.start_worker("--worker-threads", "1")
            api = cluster.start_api()
            cluster.wait_for_workers(hosts)
            jobs_per_minute(api, hosts * 2)  # warm-up: every worker runs once
            print(f"{hosts} worker host(s): {jobs_per_minute(api, args.jobs):7.1f} jobs/min")

    print("\n3. redelivery after SIGKILL of the worker host running a 5 s job (visibility timeout 5 s)")
    with Cluster(root / "redelivery", model="tests.support.fixture_generators:scripted") as cluster:
        for _ in range(2):
            cluster.start_worker("--visibility-timeout", "5")
        api = cluster.start_api()
        for taken, completed in redelivery_delays(cluster, api, args.kills):
            print(f"taken by another worker after {taken:5.2f} s; COMPLETED {completed:5.2f} s after the kill")


if __name__ == "__main__":
    main()
