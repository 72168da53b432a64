"""Scale-out end to end: a real redis-server, two API replicas and two worker hosts as real processes,
the tiny LTX-2 (and scripted prompts where a test needs a slow or fast job), the official SDK."""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from segmind import SegmindClient

from server.storage.results import make_s3_client
from tests.support.enhancing_generators import ENHANCED_SUFFIX
from tests.support.media_probe import probe_mp4
from tests.support.redis_server import require_redis_server
from tests.support.s3 import BUCKET, s3_endpoint, s3_env  # noqa: F401 - the moto S3 fixtures
from tests.support.scale_out import Cluster, host_pid
from tests.support.servers import png_data_uri
from tests.support.webhooks import SECRET, receiver_on_loopback, verified, wait_for

pytestmark = pytest.mark.e2e

SLUG = "ltx-2-19b-i2v"
KEYS = """\
bulk-key   bulk jobs
other-key  someone else
budget-key jobs=1
rate-key   rate=2
"""
SMALL = {"width": 256, "height": 256, "num_frames": 9}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    require_redis_server()
    root = tmp_path_factory.mktemp("scale-out")
    keys = root / "keys.txt"
    keys.write_text(KEYS)
    extra = ("--api-keys", str(keys), "--visibility-timeout", "3", "--max-queue", "500", "--webhook-secret", SECRET)
    with Cluster(root, extra=extra) as cluster:
        cluster.start_worker()
        cluster.start_worker()
        cluster.start_api()
        cluster.start_api()
        cluster.wait_for_workers(2)
        yield cluster


def headers(key: str = "bulk-key") -> dict[str, str]:
    return {"x-api-key": key}


def submit(api: str, prompt: str, key: str = "bulk-key", webhook: str | None = None, **params) -> str:
    body = {"image": png_data_uri(), "prompt": prompt, **SMALL, **params}
    if webhook:
        body["webhook"] = webhook
    response = httpx.post(f"{api}/v2/{SLUG}", json=body, headers=headers(key), timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["request_id"]


def status(api: str, job_id: str, key: str = "bulk-key") -> dict:
    return httpx.get(f"{api}/v2/requests/{job_id}/status", headers=headers(key), timeout=30).json()


def wait_for_status(api: str, job_id: str, wanted: set[str], timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        try:
            body = status(api, job_id)
        except (httpx.HTTPError, json.JSONDecodeError):
            body = {}
        if body.get("status") in wanted:
            return body
        time.sleep(0.1)
    raise TimeoutError(f"job {job_id} not in {wanted} within {timeout} s; last {body}")


def record(cluster: Cluster, job_id: str) -> dict:
    return cluster.redis.client().hgetall(f"ltx2:job:{job_id}")


def test_a_job_submitted_through_one_replica_is_polled_and_fetched_through_the_other(cluster, tmp_path):
    first, second = cluster.apis[:2]
    client = SegmindClient(api_key="bulk-key", base_url=f"{first}/v1")
    job = client.submit_async(SLUG, image=png_data_uri(), prompt="a lighthouse at dusk", **SMALL)
    assert wait_for_status(second, job.request_id, {"COMPLETED", "FAILED"})["status"] == "COMPLETED"

    result = httpx.get(f"{second}/v2/requests/{job.request_id}", headers=headers(), timeout=30).json()
    assert result["output"].startswith(f"{second}/outputs/")
    video = tmp_path / "out.mp4"
    video.write_bytes(httpx.get(result["output"], timeout=30).content)
    info = probe_mp4(video)
    assert (info["width"], info["height"], info["frame_count"]) == (256, 256, 9)
    assert info["audio_codec"] == "aac"
    assert result["video"]["file_size"] == video.stat().st_size
    # The SDK's own wait, through the replica that took the job, sees the same result.
    assert job.wait(timeout=60)["output"].endswith(f"{job.request_id}.mp4")

    # The blocking /v1 route on the other replica, through the SDK.
    other = SegmindClient(api_key="bulk-key", base_url=f"{second}/v1")
    response = other.run_sync(SLUG, image=png_data_uri(), prompt="blocking through replica two", **SMALL)
    assert response.content[4:8] == b"ftyp"


def test_events_and_cancellation_work_across_replicas(cluster):
    first, second = cluster.apis[:2]
    job_id = submit(first, "scripted:steps")
    wait_for_status(second, job_id, {"PROCESSING"})
    cancelled = httpx.delete(f"{second}/v2/requests/{job_id}", headers=headers(), timeout=60)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "FAILED" and cancelled.json()["error"] == "cancelled"

    streamed = submit(first, "a sailing boat")
    with httpx.stream("GET", f"{second}/v2/requests/{streamed}/events", headers=headers(), timeout=60) as events:
        bodies = [json.loads(line[5:]) for line in events.iter_lines() if line.startswith("data:")]
    assert bodies[-1]["status"] == "COMPLETED" and bodies[-1]["output"]
    progress = [body["progress"] for body in bodies]
    assert progress == sorted(progress) and progress[-1] == 1.0


def test_webhooks_and_metrics_of_jobs_run_on_worker_hosts(cluster):
    first, second = cluster.apis[:2]
    with receiver_on_loopback() as (receiver, url):
        job_id = submit(first, "scripted:fast", webhook=f"{url}/ok")
        wait_for(lambda: receiver.for_job(job_id))
        time.sleep(0.5)  # no second call follows
        calls = receiver.for_job(job_id)
        assert len(calls) == 1
        body = verified(calls[0])
        assert body["status"] == "COMPLETED" and body["output"].startswith(f"{first}/outputs/{job_id}/")

    # The replica that took a job may be gone when it ends: another one sends its webhook.
    doomed = cluster.start_api()
    with receiver_on_loopback() as (receiver, url):
        job_id = submit(doomed, "scripted:steps", webhook=f"{url}/ok")
        wait_for_status(first, job_id, {"PROCESSING"})
        cluster.api_processes[-1].kill()
        wait_for(lambda: receiver.for_job(job_id))
        assert verified(receiver.for_job(job_id)[0])["status"] == "COMPLETED"

    metrics = httpx.get(f"{second}/metrics").text
    families = {family.name: family for family in text_string_to_metric_families(metrics)}
    ready = [sample for sample in families["ltx2_worker_ready"].samples if sample.value == 1]
    assert len(ready) >= 2 and all("/" in sample.labels["worker"] for sample in ready)
    assert "ltx2_queue_depth" in families


def test_a_queued_job_shows_its_place_and_an_eta_on_every_replica(cluster):
    first, second = cluster.apis[:2]
    wait_for_status(first, submit(first, "scripted:fast"), {"COMPLETED"})  # some history to average
    running = [submit(first, "scripted:steps") for _ in range(2)]
    for job_id in running:
        wait_for_status(first, job_id, {"PROCESSING"})
    waiting = submit(first, "scripted:steps")
    body = status(second, waiting)
    assert body["status"] == "QUEUED" and body["queue_position"] == 1
    assert body["eta_seconds"] is not None and body["eta_seconds"] > 0
    for job_id in [waiting, *running]:
        assert httpx.delete(f"{second}/v2/requests/{job_id}", headers=headers(), timeout=60).status_code == 200


def test_keys_isolation_rate_limits_and_credits_hold_across_replicas(cluster):
    first, second = cluster.apis[:2]
    job_id = submit(first, "scripted:fast")
    assert httpx.get(f"{second}/v2/requests/{job_id}/status", headers=headers("other-key")).status_code == 404
    assert httpx.get(f"{second}/v2/requests/{job_id}/status", headers=headers("bulk-key")).status_code == 200

    submit(first, "scripted:fast", key="budget-key")
    spent = httpx.post(
        f"{second}/v2/{SLUG}", json={"image": png_data_uri(), "prompt": "x", **SMALL}, headers=headers("budget-key")
    )
    assert spent.status_code == 406 and "Insufficient credits" in spent.json()["error"]

    submit(first, "scripted:fast", key="rate-key")
    submit(second, "scripted:fast", key="rate-key")
    limited = httpx.post(
        f"{first}/v2/{SLUG}", json={"image": png_data_uri(), "prompt": "x", **SMALL}, headers=headers("rate-key")
    )
    assert limited.status_code == 429 and "2 submissions per minute" in limited.json()["error"]
    assert int(limited.headers["retry-after"]) >= 1


def test_killing_a_worker_host_mid_job_gets_the_job_redelivered_and_completed(cluster):
    first, second = cluster.apis[:2]
    job_id = submit(first, "scripted:steps")
    wait_for_status(first, job_id, {"PROCESSING"})
    running_on = record(cluster, job_id)["worker"]  # HOST-PID/INDEX
    os.kill(host_pid(running_on), signal.SIGKILL)
    killed_at = time.monotonic()

    final = wait_for_status(second, job_id, {"COMPLETED", "FAILED"}, timeout=60)
    assert final["status"] == "COMPLETED", final
    stored = record(cluster, job_id)
    assert stored["attempt"] == "2"
    assert stored["worker"] != running_on
    # At least the visibility timeout (3 s) passed before anyone else took it.
    assert time.monotonic() - killed_at >= 3
    # A new host replaces the killed one for the tests after this one.
    cluster.start_worker()
    cluster.wait_for_workers(2)


def test_restarting_redis_between_submission_and_completion_loses_nothing(cluster):
    first, second = cluster.apis[:2]
    running = [submit(first, "scripted:steps") for _ in range(2)]
    queued = submit(second, "scripted:fast")
    for job_id in running:
        wait_for_status(first, job_id, {"PROCESSING"})
    cluster.redis.stop()
    during = httpx.get(f"{first}/v2/requests/{queued}/status", headers=headers(), timeout=30)
    assert during.status_code == 503 and "unreachable" in during.json()["error"]
    cluster.redis.start()

    for job_id in [*running, queued]:
        assert wait_for_status(second, job_id, {"COMPLETED", "FAILED"}, timeout=90)["status"] == "COMPLETED"
    after = submit(second, "scripted:fast")
    assert wait_for_status(first, after, {"COMPLETED", "FAILED"})["status"] == "COMPLETED"


def test_expiry_deletes_the_record_and_the_result_file(cluster):
    short_lived = cluster.start_api("--ttl-seconds", "2", "--sweep-interval", "0.2")
    job_id = submit(short_lived, "scripted:fast")
    wait_for_status(short_lived, job_id, {"COMPLETED"})
    job_dir = cluster.results / job_id
    assert any(job_dir.glob("output-*.mp4"))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (job_dir.exists() or record(cluster, job_id)):
        time.sleep(0.2)
    assert not record(cluster, job_id), "Redis's expiry deletes the record"
    assert not job_dir.exists(), "the sweeper deletes the files"
    assert httpx.get(f"{short_lived}/v2/requests/{job_id}/status", headers=headers()).status_code == 404


def test_two_hundred_jobs_across_two_workers_none_lost_none_run_twice(cluster):
    first, second = cluster.apis[:2]
    before = set(cluster.ledger.read_text().split())

    def submit_one(n: int) -> str:
        return submit((first, second)[n % 2], f"scripted:fast {n}")

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(submit_one, range(200)))
    assert len(set(ids)) == 200
    finals = {job_id: wait_for_status(second if n % 2 == 0 else first, job_id, {"COMPLETED", "FAILED"})
              for n, job_id in enumerate(ids)}  # fmt: skip
    assert {body["status"] for body in finals.values()} == {"COMPLETED"}

    completed_runs = [line for line in cluster.ledger.read_text().split() if line not in before]
    runs_per_job = {job_id: sum(1 for line in completed_runs if f"/{job_id}/" in line) for job_id in ids}
    assert set(runs_per_job.values()) == {1}, "every job ran to completion exactly once"
    workers = {record(cluster, job_id)["worker"] for job_id in ids}
    assert len(workers) == 2, f"both workers took jobs: {workers}"


def test_a_redis_without_persistence_forgets_jobs_and_the_servers_go_on(tmp_path):
    require_redis_server()
    with Cluster(tmp_path, persistence=False, model="tests.support.fixture_generators:scripted") as cluster:
        cluster.start_worker("--gpus", "cpu:2")  # one host, two workers
        api = cluster.start_api()
        assert {worker["index"] for worker in cluster.wait_for_workers(2)} == {0, 1}
        before = submit(api, "short")
        wait_for_status(api, before, {"COMPLETED"})
        cluster.redis.restart()
        # Everything Redis held is gone: the job is unknown now; nothing crashed.
        assert httpx.get(f"{api}/v2/requests/{before}/status", headers=headers()).status_code == 404
        cluster.wait_for_workers(2)
        after = submit(api, "short")
        assert wait_for_status(api, after, {"COMPLETED", "FAILED"})["status"] == "COMPLETED"
        assert all(process.poll() is None for process in cluster.workers)


def test_a_worker_host_stopping_gracefully_hands_its_job_to_another_at_once(tmp_path):
    require_redis_server()
    with Cluster(tmp_path, model="tests.support.fixture_generators:scripted") as cluster:
        # A visibility timeout far longer than the test: only the hand-back can move the job in time.
        hosts = [cluster.start_worker("--shutdown-grace", "0.5", "--visibility-timeout", "120") for _ in range(2)]
        api = cluster.start_api()
        cluster.wait_for_workers(2)
        job_id = submit(api, "scripted:steps")
        wait_for_status(api, job_id, {"PROCESSING"})
        first = record(cluster, job_id)["worker"]
        stopping = next(host for host in hosts if host.pid == host_pid(first))
        stopping.terminate()
        assert stopping.wait(30) == 0
        final = wait_for_status(api, job_id, {"COMPLETED", "FAILED"}, timeout=40)
        assert final["status"] == "COMPLETED"
        stored = record(cluster, job_id)
        assert stored["worker"] != first and stored["attempt"] == "1", "a hand-back is not a failed delivery"


def test_an_api_replica_needs_no_weights_and_runs_no_workers(tmp_path):
    import subprocess
    import sys

    from tests.support.servers import REPO_ROOT, free_port

    base = [sys.executable, "-m", "server.cli", "serve", "--store", "redis://127.0.0.1:9/0"]
    base += ["--results-dir", str(tmp_path), "--model", "ltx-2-19b", "--weights", str(tmp_path / "no-weights")]
    refused = subprocess.run([*base, "--gpus", "cpu:2"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert refused.returncode != 0 and "ltx2-server worker" in refused.stderr

    port = free_port()
    replica = subprocess.Popen([*base, "--port", str(port)], cwd=REPO_ROOT, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=5)
                break
            except httpx.HTTPError:
                assert replica.poll() is None, replica.stderr.read().decode()
                time.sleep(0.2)
        # Up without weights; not ready while Redis is unreachable, and it says so.
        assert ready.status_code == 503 and "unreachable" in ready.json()["error"]
        submitted = httpx.post(f"http://127.0.0.1:{port}/v2/{SLUG}", json={"image": png_data_uri(), "prompt": "x"})
        assert submitted.status_code == 503 and "unreachable" in submitted.json()["error"]
    finally:
        replica.terminate()
        replica.wait(30)


def test_the_worker_command_needs_a_shared_store():
    import subprocess
    import sys

    from tests.support.servers import REPO_ROOT

    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "worker", "--model", "tiny"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert result.returncode != 0 and "--store redis://" in result.stderr


def test_results_in_a_bucket_are_served_through_presigned_urls_and_expire(s3_endpoint, tmp_path):  # noqa: F811
    require_redis_server()
    bucket = f"s3://{BUCKET}/e2e"
    extra = ("--results-s3", bucket, "--s3-endpoint-url", s3_endpoint, "--ttl-seconds", "4", "--sweep-interval", "0.2")
    with Cluster(tmp_path, model="tests.support.fixture_generators:scripted", extra=extra) as cluster:
        cluster.start_worker()
        api = cluster.start_api()
        job_id = submit(api, "short")
        wait_for_status(api, job_id, {"COMPLETED"})
        result = httpx.get(f"{api}/v2/requests/{job_id}", headers=headers()).json()
        assert result["output"].startswith(f"{s3_endpoint}/{BUCKET}/e2e/{job_id}/")
        video = httpx.get(result["output"]).content
        assert video[4:8] == b"ftyp" and len(video) == result["video"]["file_size"]
        token = record(cluster, job_id)["output_token"]
        redirect = httpx.get(f"{api}/outputs/{job_id}/{token}/{job_id}.mp4")
        assert redirect.status_code == 307 and redirect.headers["location"].startswith(s3_endpoint)
        # The blocking route streams the bucket's bytes through.
        blocking = SegmindClient(api_key="k", base_url=f"{api}/v1").run_sync(SLUG, image=png_data_uri(), prompt="v1")
        assert blocking.content[4:8] == b"ftyp"

        client = make_s3_client(s3_endpoint)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            listed = client.list_objects_v2(Bucket=BUCKET, Prefix=f"e2e/{job_id}/").get("Contents", [])
            if not listed and not record(cluster, job_id):
                break
            time.sleep(0.2)
        assert not listed, "the sweeper deleted the job's objects"
        assert not record(cluster, job_id)


def test_text_to_video_keyframes_and_the_enhanced_prompt_through_worker_hosts(tmp_path):
    """The t2v slug and a keyframe's image bundle reach a worker host through Redis and the shared results
    folder; the enhanced prompt a worker reports is kept in the Redis record and served by the API replica."""
    require_redis_server()
    with Cluster(tmp_path, model="tests.support.enhancing_generators:enhancing") as cluster:
        cluster.start_worker()
        api = cluster.start_api()
        cluster.wait_for_workers(1)
        client = SegmindClient(base_url=f"{api}/v1")
        t2v = client.submit_async("ltx-2-19b-t2v", prompt="a kite", enhance_prompt=True, **SMALL)
        keyed = client.submit_async(
            SLUG, image=png_data_uri(), prompt="a kite", keyframes=[{"image": png_data_uri(), "frame": 4}], **SMALL
        )
        result = t2v.wait(timeout=120, interval=0.2)
        assert result["status"] == "COMPLETED", result
        assert result["enhanced_prompt"] == "a kite" + ENHANCED_SUFFIX
        assert record(cluster, t2v.request_id)["enhanced_prompt"] == "a kite" + ENHANCED_SUFFIX
        keyed_result = keyed.wait(timeout=120, interval=0.2)
        assert keyed_result["status"] == "COMPLETED", keyed_result
        assert "enhanced_prompt" not in keyed_result  # only a request that asked for it carries the field
