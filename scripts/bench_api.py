"""Benchmark the API end to end on the tiny model: latency per payload, per-stage seconds, peak memory
of the server and its worker together, and status-poll latency under concurrent pollers.

Usage: python scripts/bench_api.py [--model tiny] [--pollers 100] [--repeat 1]
Starts `ltx2-server serve` itself on a free loopback port; prints one table. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import statistics
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.servers import cli_server, image_host, make_png  # noqa: E402

SLUG = "ltx-2-19b-i2v"
PAYLOADS = {
    "default 720x1280x181@24": dict(width=720, height=1280, num_frames=181, fps=24),
    "small 256x256x9@24": dict(width=256, height=256, num_frames=9, fps=24),
}


def tree_rss_bytes(root_pid: int) -> int:
    """Resident memory of a process and all its descendants, read from /proc."""
    total, pending = 0, [root_pid]
    while pending:
        pid = pending.pop()
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024
            for task in Path(f"/proc/{pid}/task").iterdir():
                children = (task / "children").read_text().split()
                pending.extend(int(child) for child in children)
        except (OSError, AttributeError):
            continue
    return total


class PeakSampler:
    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss_bytes(self.pid))
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def wait_final(client: httpx.Client, status_url: str) -> dict:
    while True:
        body = client.get(status_url).json()
        if body["status"] in ("COMPLETED", "FAILED"):
            return body
        time.sleep(0.05)


async def _poll_on_one_connection(url: str, interval: float, stop: threading.Event, latencies: list[float]) -> None:
    """One keep-alive HTTP/1.1 connection polling at a random phase, like independent clients.

    A bare socket client: httpx in this process would cost more CPU per request than the server
    does, and on 2 cores the figure would measure the client.
    """
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    request = f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode()
    await asyncio.sleep(random.uniform(0, interval))
    try:
        while not stop.is_set():
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
            body = await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if b'"COMPLETED"' in body or b'"FAILED"' in body:
                return
            await asyncio.sleep(interval)
    finally:
        writer.close()


async def poll_concurrently(status_url: str, pollers: int, interval: float, stop: threading.Event) -> list[float]:
    latencies: list[float] = []
    await asyncio.gather(*(_poll_on_one_connection(status_url, interval, stop, latencies) for _ in range(pollers)))
    return latencies


def stages_from_log(log_path: Path, request_id: str) -> str:
    for line in log_path.read_text(errors="replace").splitlines():
        if request_id in line and "stages:" in line:
            return line.split("stages:", 1)[1].strip(" )")
    return "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--pollers", type=int, default=100)
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=1.0,
        help="seconds each poller waits between polls (the SDK default is 1)",
    )
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    log_dir = Path(os.environ.setdefault("LTX2_TEST_LOG_DIR", "/tmp"))
    rows = []
    with image_host({"/input.png": (200, "image/png", make_png(720, 1280))}) as host:
        started = time.monotonic()
        with cli_server("--model", args.model) as (base_url, process):
            print(f"server ready in {time.monotonic() - started:.1f} s (pid {process.pid})", flush=True)
            log_path = log_dir / f"ltx2-server-{base_url.rsplit(':', 1)[1]}.log"
            idle_rss = tree_rss_bytes(process.pid)
            with httpx.Client(timeout=60) as client:
                for name, sizes in PAYLOADS.items():
                    for _ in range(args.repeat):
                        body = {"image": f"{host}/input.png", "prompt": "a woman walks toward the camera", **sizes}
                        with PeakSampler(process.pid) as sampler:
                            t0 = time.perf_counter()
                            submitted = client.post(f"{base_url}/v2/{SLUG}", json=body).json()
                            final = wait_final(client, submitted["status_url"])
                            wall = time.perf_counter() - t0
                        rows.append(
                            (
                                name,
                                final["status"],
                                wall,
                                sampler.peak,
                                stages_from_log(log_path, submitted["request_id"]),
                            )
                        )
                        print(f"{name}: {final['status']} in {wall:.2f} s", flush=True)

                # Status-poll latency while the default payload generates.
                body = {"image": f"{host}/input.png", "prompt": "pollers", **PAYLOADS["default 720x1280x181@24"]}
                submitted = client.post(f"{base_url}/v2/{SLUG}", json=body).json()
                while client.get(submitted["status_url"]).json()["status"] == "QUEUED":
                    time.sleep(0.02)
                stop = threading.Event()
                latencies = asyncio.run(
                    poll_concurrently(submitted["status_url"], args.pollers, args.poll_interval, stop)
                )
            latencies.sort()

    print()
    print(f"{'payload':28} {'status':10} {'end to end s':>12} {'peak RSS GB':>12}  stages (s)")
    for name, status, wall, peak, stages in rows:
        print(f"{name:28} {status:10} {wall:12.2f} {peak / 2**30:12.2f}  {stages}")
    print(f"\nidle RSS (server + worker): {idle_rss / 2**30:.2f} GB")
    if latencies:
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
        print(
            f"status polls during generation: {len(latencies)} polls by {args.pollers} pollers, "
            f"each every {args.poll_interval:g} s at random phase: p50 {p50:.1f} ms, p99 {p99:.1f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
