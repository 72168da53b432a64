"""Load and fuzz figures for the API process (issue 4): submissions per second accepted, p50/p99 of
status polls under load, jobs lost, 5xx answers to fuzzed input, peak and settled RSS of the API process.

Usage: python scripts/bench_load.py [--submissions 1000] [--pollers 200] [--ttl 15] [--fuzz-examples 500]
       [--store memory|redis]
Starts `ltx2-server serve` with the fast fixture generator on a free loopback port; with `--store redis`,
a redis-server, one worker host and one API replica instead (RSS is the replica's). Figures, not assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.e2e.test_fuzz import send_fuzzed_request  # noqa: E402
from tests.support.load import RssSampler, rss_bytes, run_load, wait_until_all_expired  # noqa: E402
from tests.support.scale_out import Cluster  # noqa: E402
from tests.support.servers import cli_server  # noqa: E402

FAST_MODEL = "tests.support.fixture_generators:fast"


def count_fuzz_5xx(base_url: str, examples: int) -> tuple[int, int]:
    """(requests sent, 5xx answers) over ``examples`` hypothesis-drawn requests."""
    counts = {"sent": 0, "5xx": 0}
    with httpx.Client(base_url=base_url, timeout=30) as client:
        spec = client.get("/openapi.json").json()

        @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(data=st.data())
        def fuzz(data) -> None:
            response = send_fuzzed_request(client, spec, data)
            counts["sent"] += 1
            counts["5xx"] += response.status_code >= 500

        fuzz()
    return counts["sent"], counts["5xx"]


@contextmanager
def server_under_test(store: str, server_args: tuple[str, ...]):
    """(base URL, the API process): one `serve`, or a Redis deployment's replica."""
    if store == "memory":
        with cli_server(*server_args) as served:
            yield served
        return
    with Cluster(Path(tempfile.mkdtemp(prefix="ltx2-bench-load-")), model=FAST_MODEL, extra=server_args) as cluster:
        cluster.start_worker()
        base_url = cluster.start_api()
        yield base_url, cluster.api_processes[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", type=int, default=1000)
    parser.add_argument("--pollers", type=int, default=200)
    parser.add_argument("--ttl", type=float, default=15.0, help="the server's --ttl-seconds, to see memory settle")
    parser.add_argument("--fuzz-examples", type=int, default=500)
    parser.add_argument("--store", choices=("memory", "redis"), default="memory")
    args = parser.parse_args()
    server_args = ("--model", FAST_MODEL, "--max-queue", str(args.submissions * 2), "--ttl-seconds", str(args.ttl))
    server_args += ("--sweep-interval", "0.5", "--log-level", "warning")
    with server_under_test(args.store, server_args) as (base_url, process):
        start_rss = rss_bytes(process.pid)
        with RssSampler(process.pid) as sampler:
            result = asyncio.run(run_load(base_url, submissions=args.submissions, pollers=args.pollers))
            load_peak = sampler.peak
            sent, fuzz_5xx = count_fuzz_5xx(base_url, args.fuzz_examples)
        expired = wait_until_all_expired(base_url, result.request_ids, timeout=args.ttl + 60)
        time.sleep(1.0)
        settled_rss = rss_bytes(process.pid)
    never_final = result.submitted - len(result.final_status) - len(result.lost)
    rows = [
        ("submissions accepted", f"{result.submitted} of {args.submissions} (refused: {result.refused or 'none'})"),
        ("submissions per second accepted", f"{result.submissions_per_second:.1f}"),
        ("all jobs final after", f"{result.total_seconds:.1f} s"),
        (
            f"status polls under load ({args.pollers} pollers, {len(result.poll_latencies)} polls)",
            f"p50 {result.poll_percentile(0.5) * 1000:.1f} ms, p99 {result.poll_percentile(0.99) * 1000:.1f} ms",
        ),
        ("jobs lost", f"{len(result.lost) + never_final} (duplicated ids: {result.duplicated})"),
        ("5xx answers under load", f"{result.server_errors}"),
        ("5xx answers to fuzzed input", f"{fuzz_5xx} of {sent} requests"),
        ("API process RSS: start", f"{start_rss / 2**20:.1f} MiB"),
        ("API process RSS: peak (load)", f"{load_peak / 2**20:.1f} MiB (with fuzz: {sampler.peak / 2**20:.1f} MiB)"),
        ("API process RSS: settled after the TTL", f"{settled_rss / 2**20:.1f} MiB (all jobs expired: {expired})"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
