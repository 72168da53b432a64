"""A bounded loopback load test: 1,000 submissions of a small payload with 200 concurrent pollers
against `ltx2-server serve` (fast fixture generator) in a real subprocess. Every job reaches a final
state, none is lost or duplicated, nothing answers 5xx, and after the TTL the job table is empty and
the API process's memory is back near where it started. Figures are printed by scripts/bench_load.py."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.load import LOAD_LORA, RssSampler, rss_bytes, run_load, wait_until_all_expired
from tests.support.lora_files import write_tiny_lora_file
from tests.support.servers import cli_server

FAST_MODEL = "tests.support.fixture_generators:fast"
TTL_SECONDS = 10


@pytest.mark.e2e
def test_thousand_submissions_with_two_hundred_pollers_lose_nothing(tmp_path):
    """Mixed submissions: image- and text-to-video, keyframes, prompt enhancement and a LoRA."""
    write_tiny_lora_file(tmp_path / "loras" / f"{LOAD_LORA}.safetensors")
    args = ("--model", FAST_MODEL, "--max-queue", "2000", "--ttl-seconds", str(TTL_SECONDS), "--sweep-interval", "0.5")
    with cli_server(*args, "--loras", str(tmp_path / "loras"), "--log-level", "warning") as (base_url, process):
        start_rss = rss_bytes(process.pid)
        with RssSampler(process.pid) as sampler:
            result = asyncio.run(run_load(base_url, submissions=1000, pollers=200, mixed=True, with_lora=True))
        assert result.submitted == 1000 and result.refused == {}
        assert result.duplicated == 0
        assert result.lost == []
        assert len(result.final_status) == 1000
        assert set(result.final_status.values()) == {"COMPLETED"}
        assert result.server_errors == 0

        assert wait_until_all_expired(base_url, result.request_ids, timeout=TTL_SECONDS + 30)
        settled_rss = rss_bytes(process.pid)
        # Near the start: within 32 MB (the allocator keeps some arenas), and well below any leak
        # of 1,000 jobs' records and inputs.
        assert settled_rss - start_rss < 32 * 1024 * 1024, (start_rss, sampler.peak, settled_rss)
