"""On a host with NVIDIA GPUs: `--gpus all` starts one worker per GPU, each pinned to its own GPU and
seeing it alone. Skipped without one (CI has none; `pytest -m gpu` on a GPU host runs it)."""

from __future__ import annotations

import time

import httpx
import pytest

from server.workers.devices import count_visible_gpus
from tests.support.servers import cli_server

GPUS = count_visible_gpus()

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(GPUS == 0, reason="needs an NVIDIA GPU")]


def test_all_pins_one_worker_to_each_gpu(tmp_path):
    model = "tests.support.fixture_generators:describes_its_placement"
    with cli_server("--model", model, "--gpus", "all", "--results-dir", str(tmp_path)) as (base_url, _):
        # /ready answers 200 once any worker is ready; this waits for all of them.
        deadline = time.monotonic() + 120
        while True:
            workers = httpx.get(f"{base_url}/ready").json()["workers"]
            if all(w["state"] == "ready" for w in workers):
                break
            assert time.monotonic() < deadline, workers
            time.sleep(0.2)
        assert [w["device"] for w in workers] == [f"cuda:{index}" for index in range(GPUS)]
        assert len({w["pid"] for w in workers}) == GPUS
        # Each child saw only its own GPU, as CUDA device 0 of one.
        assert [w["model"].split(" threads=")[0] for w in workers] == [
            f"pinned={index} sees=1" for index in range(GPUS)
        ]
