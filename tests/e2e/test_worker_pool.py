"""--gpus cpu:N: several real worker processes behind one real server, sharing one queue."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import httpx
import pytest

from server.cli.main import main
from server.workers.devices import count_visible_gpus
from tests.support.api import scrape, wait_for
from tests.support.servers import cli_server, png_data_uri

SLUG = "ltx-2-19b-i2v"
PLACED_MODEL = "tests.support.fixture_generators:describes_its_placement"


def pool_server(tmp_path, *extra: str):
    return cli_server(
        "--model", PLACED_MODEL, "--gpus", "cpu:2", "--log-format", "json", "--results-dir", str(tmp_path), *extra
    )


def submit(base_url: str, prompt: str) -> str:
    body = {"image": png_data_uri(), "prompt": prompt, "width": 256, "height": 256, "num_frames": 9, "fps": 8}
    response = httpx.post(f"{base_url}/v2/{SLUG}", json=body, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["request_id"]


def final_status(base_url: str, request_id: str) -> dict:
    def final():
        body = httpx.get(f"{base_url}/v2/requests/{request_id}/status", timeout=10).json()
        return body if body["status"] in ("COMPLETED", "FAILED") else None

    return wait_for(final, timeout=60)


def workers(base_url: str) -> list[dict]:
    return httpx.get(f"{base_url}/ready", timeout=10).json()["workers"]


def both_running(base_url: str) -> list[dict] | None:
    now = workers(base_url)
    return now if all(worker["job"] for worker in now) else None


def started_order(base_url: str) -> list[str]:
    port = base_url.rsplit(":", 1)[1]
    log_path = Path(os.environ.get("LTX2_TEST_LOG_DIR", "/tmp")) / f"ltx2-server-{port}.log"
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    return [line["request_id"] for line in lines if line["logger"] == "ltx2.jobs" and line.get("event") == "started"]


def is_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return True
    return state in ("Z", "X")  # a zombie has stopped running; only its reaper is missing


def test_two_cpu_workers_load_and_take_queued_jobs_in_order_side_by_side(tmp_path):
    with pool_server(tmp_path) as (base_url, _):
        ready = httpx.get(f"{base_url}/ready").json()
        pool = ready["workers"]
        assert [w["index"] for w in pool] == [0, 1] and [w["device"] for w in pool] == ["cpu", "cpu"]
        assert len({w["pid"] for w in pool}) == 2 and ready["worker_pid"] == pool[0]["pid"]
        # Only a restart would be counted; the CPU cores are split between the two workers.
        threads = str(max(1, (os.cpu_count() or 1) // 2))
        assert all(w["model"] == f"pinned=- threads={threads}" for w in wait_for(lambda: both_ready(base_url)))
        assert ready["worker_restarts"] == 0 and ready["ready"] is True
        metrics = scrape(base_url)
        for index in ("0", "1"):
            assert metrics[f"ltx2_pool_worker_ready{{device=cpu,worker={index}}}"] == 1
            assert metrics[f"ltx2_pool_worker_busy{{device=cpu,worker={index}}}"] == 0
            assert metrics[f"ltx2_pool_worker_restarts_total{{device=cpu,worker={index}}}"] == 0
        assert metrics["ltx2_worker_ready"] == 1 and metrics["ltx2_worker_restarts_total"] == 0

        ids = [submit(base_url, f"slow {n}") for n in range(4)]
        running = wait_for(lambda: both_running(base_url))
        assert {w["job"] for w in running} <= set(ids) and running[0]["job"] != running[1]["job"]
        assert [final_status(base_url, request_id)["status"] for request_id in ids] == ["COMPLETED"] * 4
        assert started_order(base_url) == ids


def both_ready(base_url: str) -> list[dict] | None:
    now = workers(base_url)
    return now if all(worker["state"] == "ready" for worker in now) else None


def test_a_killed_worker_fails_only_its_job_and_restarts_while_the_other_serves_on(tmp_path):
    with pool_server(tmp_path) as (base_url, _):
        doomed, survivor = submit(base_url, "steps doomed"), submit(base_url, "steps survivor")
        running = wait_for(lambda: both_running(base_url))
        victim = next(w for w in running if w["job"] == doomed)
        other = next(w for w in running if w["job"] == survivor)
        os.kill(victim["pid"], signal.SIGKILL)

        failed = final_status(base_url, doomed)
        assert failed["status"] == "FAILED" and "worker process died" in failed["error"]
        assert final_status(base_url, survivor)["status"] == "COMPLETED"
        after = wait_for(lambda: both_ready(base_url))
        restarted, untouched = after[victim["index"]], after[other["index"]]
        assert restarted["restarts"] == 1 and restarted["pid"] not in (victim["pid"], None)
        assert restarted["device"] == victim["device"]
        assert untouched["restarts"] == 0 and untouched["pid"] == other["pid"]
        metrics = scrape(base_url)
        assert metrics[f"ltx2_pool_worker_restarts_total{{device=cpu,worker={victim['index']}}}"] == 1
        assert metrics[f"ltx2_pool_worker_restarts_total{{device=cpu,worker={other['index']}}}"] == 0
        assert metrics["ltx2_worker_restarts_total"] == 1

        later = [submit(base_url, f"ok {n}") for n in range(3)]
        assert [final_status(base_url, request_id)["status"] for request_id in later] == ["COMPLETED"] * 3


def test_workers_die_with_a_killed_server(tmp_path):
    with pool_server(tmp_path) as (base_url, process):
        pids = [w["pid"] for w in workers(base_url)]
        # A hang sends nothing to the dead server, so no broken pipe would stop it: only the kernel's
        # parent-death signal does, well before the hang's minute is up.
        submit(base_url, "hang left behind")
        wait_for(lambda: any(w["job"] for w in workers(base_url)))
        process.kill()  # SIGKILL: the server runs no clean-up at all
        process.wait()
        assert wait_for(lambda: all(is_gone(pid) for pid in pids), timeout=30)


def test_a_job_queued_while_a_worker_restarts_goes_to_the_idle_one(tmp_path):
    with pool_server(tmp_path) as (base_url, _):
        first = workers(base_url)[0]
        os.kill(first["pid"], signal.SIGKILL)  # idle, and first in line for the queue until now
        wait_for(lambda: workers(base_url)[0]["restarts"] == 1)
        request_id = submit(base_url, "slow while worker 0 restarts")
        running = wait_for(lambda: next((w for w in workers(base_url) if w["job"] == request_id), None))
        assert running["index"] == 1
        assert final_status(base_url, request_id)["status"] == "COMPLETED"


def test_bad_or_unmet_gpus_values_stop_the_server_at_start_with_a_clear_message():
    with pytest.raises(SystemExit, match="gpus: must be .*all.*0,2,3.*cpu:N; got 'gpu0'"):
        main(["serve", "--gpus", "gpu0"])
    if count_visible_gpus() == 0:
        with pytest.raises(SystemExit, match="gpus: 'all' found no NVIDIA GPU"):
            main(["serve", "--gpus", "all", "--port", "1"])


def test_cancelling_a_running_job_stops_it_on_its_own_worker_only(tmp_path):
    with pool_server(tmp_path) as (base_url, _):
        kept, cancelled = submit(base_url, "steps kept"), submit(base_url, "steps cancelled")
        before = wait_for(lambda: both_running(base_url))
        answer = httpx.delete(f"{base_url}/v2/requests/{cancelled}", timeout=60)
        assert answer.status_code == 200 and answer.json()["error"] == "cancelled"
        assert final_status(base_url, kept)["status"] == "COMPLETED"
        # Stopped at a step, not by killing anything: both workers keep their processes.
        after = workers(base_url)
        assert [w["pid"] for w in after] == [w["pid"] for w in before]
        assert [w["restarts"] for w in after] == [0, 0]
