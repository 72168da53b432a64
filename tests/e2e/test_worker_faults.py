"""Workers that cannot load: /ready says why, jobs wait instead of being lost, the worker is retried."""

from __future__ import annotations

import httpx

from server.api.app import create_app
from server.settings import Settings
from tests.support.api import wait_for
from tests.support.servers import png_data_uri, thread_server


def test_load_failure_shows_on_ready_and_is_retried(tmp_path):
    settings = Settings(model="tests.support.fixture_generators:broken", results_dir=str(tmp_path))
    with thread_server(create_app(settings), wait_ready=False) as base_url:
        ready = wait_for(lambda: (r := httpx.get(f"{base_url}/ready")).json().get("error") and r)
        assert ready.status_code == 503 and "scripted load failure" in ready.json()["error"]
        assert httpx.get(f"{base_url}/health").status_code == 200
        wait_for(lambda: httpx.get(f"{base_url}/ready").json()["worker_restarts"] >= 2)
        submitted = httpx.post(f"{base_url}/v2/ltx-2-19b-i2v", json={"image": png_data_uri(), "prompt": "waits"}).json()
        # No worker can take it, so it waits in the queue rather than being dropped.
        assert httpx.get(submitted["status_url"]).json()["status"] == "QUEUED"


def test_worker_hanging_at_load_is_killed_after_the_start_timeout(tmp_path):
    settings = Settings(
        model="tests.support.fixture_generators:hangs_while_loading",
        results_dir=str(tmp_path),
        worker_start_timeout=1.0,
    )
    with thread_server(create_app(settings), wait_ready=False) as base_url:
        ready = wait_for(lambda: (r := httpx.get(f"{base_url}/ready")).json()["worker_restarts"] >= 1 and r)
        assert ready.status_code == 503
        assert "did not load the model within 1 s" in ready.json()["error"]


def test_unwritable_results_dir_fails_the_submission_clearly_and_recovers(tmp_path):
    import shutil

    results = tmp_path / "results"
    settings = Settings(model="tests.support.fixture_generators:scripted", results_dir=str(results))
    body = {"image": png_data_uri(), "prompt": "p", "width": 256, "height": 256, "num_frames": 9, "fps": 8}
    with thread_server(create_app(settings)) as base_url:
        shutil.rmtree(results)
        results.write_text("a file where the results directory should be")
        refused = httpx.post(f"{base_url}/v2/ltx-2-19b-i2v", json=body)
        assert refused.status_code == 500 and "storing the input image failed" in refused.json()["error"]

        results.unlink()
        results.mkdir()
        accepted = httpx.post(f"{base_url}/v2/ltx-2-19b-i2v", json=body).json()
        final = wait_for(
            lambda: (s := httpx.get(accepted["status_url"]).json())["status"] in ("COMPLETED", "FAILED") and s
        )
        assert final["status"] == "COMPLETED"
