"""Result storage: the shared directory on tmp dirs, the S3 bucket against a real S3 server (moto) on loopback."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from server.errors import InputGone, OutputGone
from server.settings import Settings
from server.storage.results import (
    MAX_PRESIGN_SECONDS,
    S3Storage,
    SharedDirStorage,
    make_s3_client,
    parse_s3_url,
    results_storage,
)
from tests.support.s3 import BUCKET, s3_endpoint, s3_env  # noqa: F401 - the moto S3 fixtures

VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 9000  # ~2.3 MB: more than one read chunk
IMAGE = b"\x89PNG\r\n\x1a\n" + b"pixels" * 100


def run(coro):
    return asyncio.run(coro)


def new_id() -> str:
    return str(uuid.uuid4())


# ---- shared directory -------------------------------------------------------------------------------


@pytest.fixture
def shared(tmp_path) -> SharedDirStorage:
    return SharedDirStorage(tmp_path / "results")


def test_shared_dir_round_trip(shared, tmp_path):
    job_id = new_id()
    location = run(shared.save_input(job_id, IMAGE))
    assert Path(location) == shared.root / job_id / "input.img"

    local = run(shared.local_input(job_id, location, tmp_path / "scratch"))
    assert local == Path(location) and local.read_bytes() == IMAGE

    out = shared.local_output_path(job_id, tmp_path / "scratch")
    assert out == shared.root / job_id / "output.mp4" and out.parent.is_dir()
    out.write_bytes(VIDEO)
    output = run(shared.publish_output(job_id, out))
    assert Path(output) == out and out.read_bytes() == VIDEO  # nothing copied, nothing removed

    assert run(shared.output_size(output)) == len(VIDEO)
    assert shared.local_file(output) == out
    stream = run(shared.open_output(output))
    assert stream.size == len(VIDEO) and run(stream.read_all()) == VIDEO
    url = shared.output_url(job_id, output, "tok", "http://api.example:8000")
    assert url == f"http://api.example:8000/outputs/{job_id}/tok/{job_id}.mp4"

    run(shared.delete_job(job_id))
    run(shared.delete_job(job_id))  # idempotent
    assert not (shared.root / job_id).exists()
    assert run(shared.output_size(output)) is None
    with pytest.raises(OutputGone):
        shared.local_file(output)
    with pytest.raises(OutputGone):
        run(shared.open_output(output))
    with pytest.raises(InputGone):
        run(shared.local_input(job_id, location, tmp_path / "scratch"))


def test_shared_dir_publish_moves_a_video_written_elsewhere(shared, tmp_path):
    job_id = new_id()
    elsewhere = tmp_path / "elsewhere.mp4"
    elsewhere.write_bytes(VIDEO)
    output = run(shared.publish_output(job_id, elsewhere))
    assert Path(output) == shared.root / job_id / "elsewhere.mp4"  # keeps its name (one per delivery)
    assert Path(output).read_bytes() == VIDEO and not elsewhere.exists()


def test_shared_dir_refuses_ids_and_locations_outside_its_root(shared, tmp_path):
    for bad in ("", "..", "a/b", "..\\x"):
        with pytest.raises(ValueError, match="job id"):
            run(shared.save_input(bad, IMAGE))
    outside = tmp_path / "secret.txt"
    outside.write_text("no")
    with pytest.raises(ValueError, match="not under the results directory"):
        shared.local_file(str(outside))
    with pytest.raises(ValueError, match="not under the results directory"):
        shared.local_file(str(shared.root / ".." / "secret.txt"))


def test_results_storage_picks_the_shared_dir_without_a_bucket(tmp_path):
    storage = results_storage(str(tmp_path), "", "")
    assert isinstance(storage, SharedDirStorage) and storage.root == tmp_path.resolve()


# ---- settings --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"results_s3": "https://bucket/x"}, "results-s3: must start with s3://"),
        ({"results_s3": "s3://"}, "results-s3: must name a bucket"),
        ({"results_s3": "s3:///prefix"}, "results-s3: must name a bucket"),
        ({"results_s3": "s3://Bad_Bucket/p"}, "results-s3: bucket must be 3-63 lower-case"),
        ({"results_s3": "s3://bucket", "s3_endpoint_url": "minio:9000"}, "s3-endpoint-url: must be an http://"),
        ({"s3_endpoint_url": "http://minio:9000", "results_dir": "/shared"}, "s3-endpoint-url: is only used with"),
    ],
)
def test_settings_name_the_s3_field_at_fault(values, expected):
    problems = Settings(store="redis://127.0.0.1:6379/0", **values).problems()
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_a_bucket_is_refused_without_a_shared_store():
    assert Settings(results_s3="s3://bucket/p").problems() == [
        "results-s3: is only used with --store redis://... (one host keeps results in --results-dir)"
    ]


def test_settings_accept_a_bucket_with_and_without_prefix_and_endpoint():
    redis = "redis://127.0.0.1:6379/0"
    assert Settings(store=redis, results_s3="s3://ltx-results").problems() == []
    endpoint = "https://r2.example.com"
    assert Settings(store=redis, results_s3="s3://ltx-results/prod/v1/", s3_endpoint_url=endpoint).problems() == []
    assert parse_s3_url("s3://ltx-results/prod/v1/").prefix == "prod/v1"
    assert parse_s3_url("s3://ltx-results").prefix == ""


def test_a_missing_boto3_is_named_with_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "boto3", None)  # what an install without the s3 extra looks like
    with pytest.raises(RuntimeError, match=r"ltx2-server\[s3\]"):
        make_s3_client("")


# ---- S3 bucket on a real S3-compatible server --------------------------------------------------------

@pytest.fixture
def s3(s3_endpoint) -> S3Storage:  # noqa: F811
    storage = results_storage("", f"s3://{BUCKET}/runs/{uuid.uuid4().hex[:8]}", s3_endpoint, ttl_seconds=900)
    assert isinstance(storage, S3Storage)
    return storage


def keys_under(storage: S3Storage, job_id: str) -> list[str]:
    listing = storage.client.list_objects_v2(Bucket=BUCKET, Prefix=f"{storage.place.prefix}/{job_id}/")
    return sorted(item["Key"] for item in listing.get("Contents", []))


def test_s3_round_trip(s3, tmp_path):
    job_id = new_id()
    scratch = tmp_path / "scratch"
    location = run(s3.save_input(job_id, IMAGE))
    assert location == f"s3://{BUCKET}/{s3.place.prefix}/{job_id}/input.img"

    local = run(s3.local_input(job_id, location, scratch))
    assert local.parent == scratch / job_id and local.read_bytes() == IMAGE

    out = s3.local_output_path(job_id, scratch)
    assert out.parent == scratch / job_id
    out.write_bytes(VIDEO)
    output = run(s3.publish_output(job_id, out))
    assert output == f"s3://{BUCKET}/{s3.place.prefix}/{job_id}/output.mp4"
    assert not out.exists()  # the scratch copy is dropped once uploaded
    head = s3.client.head_object(Bucket=BUCKET, Key=output.split(f"{BUCKET}/", 1)[1])
    assert head["ContentType"] == "video/mp4"

    assert run(s3.output_size(output)) == len(VIDEO)
    assert s3.local_file(output) is None  # the bucket serves it: /outputs redirects
    stream = run(s3.open_output(output))
    assert stream.size == len(VIDEO) and run(stream.read_all()) == VIDEO

    url = s3.output_url(job_id, output, "tok", "http://api.example:8000")
    with httpx.Client(trust_env=False) as client:
        answer = client.get(url)
    assert answer.status_code == 200 and answer.content == VIDEO
    assert answer.headers["content-type"] == "video/mp4"

    run(s3.discard_local(job_id, scratch))
    assert not (scratch / job_id).exists()

    assert keys_under(s3, job_id) == sorted(
        [f"{s3.place.prefix}/{job_id}/input.img", f"{s3.place.prefix}/{job_id}/output.mp4"]
    )
    run(s3.delete_job(job_id))
    run(s3.delete_job(job_id))  # idempotent
    assert keys_under(s3, job_id) == []

    assert run(s3.output_size(output)) is None
    with pytest.raises(OutputGone):
        run(s3.open_output(output))
    with pytest.raises(InputGone):
        run(s3.local_input(job_id, location, scratch))
    with httpx.Client(trust_env=False) as client:
        # The bucket answers 403 for a missing key when signers may not list it (as S3 does), else 404.
        assert client.get(url).status_code in (403, 404)


def test_s3_delete_job_leaves_other_jobs_alone(s3):
    keep, drop = new_id(), new_id()
    run(s3.save_input(keep, IMAGE))
    run(s3.save_input(drop, IMAGE))
    run(s3.delete_job(drop))
    assert keys_under(s3, keep) == [f"{s3.place.prefix}/{keep}/input.img"]
    assert keys_under(s3, drop) == []


def test_s3_refuses_locations_of_another_bucket(s3):
    with pytest.raises(ValueError, match="not in the results bucket"):
        run(s3.output_size("s3://other-bucket/x/output.mp4"))
    with pytest.raises(ValueError, match="not in the results bucket"):
        s3.local_file("/tmp/output.mp4")


def test_presigning_needs_no_network(s3_env):  # noqa: F811
    # Nothing listens on the discard port: a presign that made a request would fail.
    storage = S3Storage(f"s3://{BUCKET}/p", "http://127.0.0.1:9", ttl_seconds=3600)
    location = f"s3://{BUCKET}/p/job/output.mp4"
    query = parse_qs(urlsplit(storage.output_url("job", location, "tok", "http://api")).query)
    assert query["X-Amz-Expires"] == ["3600"]  # the TTL by default
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    url = storage.output_url("job", location, "tok", "http://api", expires_in=120.5)
    assert urlsplit(url).path == f"/{BUCKET}/p/job/output.mp4"  # path-style for custom endpoints
    assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == ["120"]
    url = storage.output_url("job", location, "tok", "http://api", expires_in=30 * 24 * 3600)
    assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == [str(MAX_PRESIGN_SECONDS)]


def test_s3_publishes_a_multipart_sized_video_as_mp4(s3, tmp_path):
    job_id = new_id()
    big = os.urandom(9 * 1024 * 1024)  # past boto3's 8 MiB multipart threshold, like real videos
    out = s3.local_output_path(job_id, tmp_path)
    out.write_bytes(big)
    output = run(s3.publish_output(job_id, out))
    head = s3.client.head_object(Bucket=BUCKET, Key=output.split(f"{BUCKET}/", 1)[1])
    assert head["ContentType"] == "video/mp4" and head["ContentLength"] == len(big)
    assert run(run_and_read(s3, output)) == big


async def run_and_read(storage, location: str) -> bytes:
    return await (await storage.open_output(location)).read_all()


def test_the_module_imports_neither_torch_nor_fastapi():
    code = "import sys, server.storage.results; print(sorted({'torch', 'fastapi', 'boto3'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "[]"
