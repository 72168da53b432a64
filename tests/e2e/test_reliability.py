"""No input leaves a job stuck or answers 500, on the in-memory store and on a Redis store.

Every accepted job reaches COMPLETED or FAILED within bounded time, whatever its image: Pillow's
crash files (tests/support/hostile_images.py), inline or fetched; redirects to URLs httpx cannot even build
(``Location: http:x``); random bytes. Hostile submissions cannot fill the queue for other keys,
jobs that never end are failed by the expiry sweep, and image downloads in flight are capped (429).
All through real HTTP: real uvicorn on loopback, real worker processes, real redis-server.
"""

from __future__ import annotations

import base64
import io
import re
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from server.api.app import create_app
from server.jobs.images import ACCEPTED_FORMATS, WANTED_FORMATS, check_image_bytes
from server.settings import Settings
from tests.support.api import SLUG, payload, submit, wait_final
from tests.support.hostile_images import PILLOW_CRASHERS
from tests.support.redis_server import require_redis_server
from tests.support.scale_out import Cluster
from tests.support.servers import drip_host, make_png, thread_server

FAST_MODEL = "tests.support.fixture_generators:fast"
SCRIPTED_MODEL = "tests.support.fixture_generators:scripted"
FINAL = ("COMPLETED", "FAILED")


# ---- the fixtures stay hostile; the allow-list ------------------------------------------------


@pytest.mark.parametrize("name", sorted(PILLOW_CRASHERS))
def test_the_crash_files_still_crash_pillows_own_readers_and_are_refused_here(name):
    raw, raised = PILLOW_CRASHERS[name]
    with warnings.catch_warnings(), pytest.raises(raised):
        warnings.simplefilter("ignore")  # the IM reader is deprecated
        with Image.open(io.BytesIO(raw)) as img:
            img.load()
    with pytest.raises(Exception) as refused:
        check_image_bytes(raw)
    assert refused.value.message.startswith("image: ") and "PNG, JPEG, WebP" in refused.value.message


def test_only_the_formats_a_user_sends_are_read_and_the_worker_reads_the_same():
    from pipelines.generate import ACCEPTED_IMAGE_FORMATS

    assert ACCEPTED_IMAGE_FORMATS == WANTED_FORMATS
    assert {"PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"} <= set(ACCEPTED_FORMATS) <= set(WANTED_FORMATS)
    for fmt in ("GIF", "BMP", "TIFF", "WEBP", "JPEG"):
        buffer = io.BytesIO()
        Image.new("RGB", (20, 10), (200, 10, 10)).save(buffer, format=fmt)
        assert check_image_bytes(buffer.getvalue()) == (20, 10)
    buffer = io.BytesIO()
    Image.new("L", (20, 10)).save(buffer, format="PCX")  # Pillow reads it; a user does not send it
    with pytest.raises(Exception, match="accepted format"):
        check_image_bytes(buffer.getvalue())


def test_the_worker_opens_only_accepted_formats(tmp_path):
    from pipelines.generate import load_image
    from pipelines.interface import InvalidInputError

    for name, (raw, _) in PILLOW_CRASHERS.items():
        path = tmp_path / f"{name}.img"
        path.write_bytes(raw)
        with pytest.raises(InvalidInputError, match="image: cannot decode"):
            load_image(path)
    good = tmp_path / "good.img"
    good.write_bytes(make_png(32, 16))
    assert load_image(good).size == (32, 16)


# ---- hosts and deployments -------------------------------------------------------------------


@contextmanager
def raw_host(routes: dict[str, tuple[int, bytes, bytes]]):
    """Answers {path: (status, Location header bytes or b"", body)} with bytes written as they are,
    so a Location can be anything; ``routes`` may change while it runs."""
    import socketserver

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            line = self.rfile.readline(65537).split()
            while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                pass
            path = line[1].decode("latin-1") if len(line) > 1 else "/"
            status, location, body = routes.get(path, (404, b"", b"not found"))
            head = b"HTTP/1.1 %d X\r\n" % status
            if location:
                head += b"Location: " + location + b"\r\n"
            head += b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
            try:
                self.wfile.write(head + body)
            except OSError:
                pass

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class Deployment:
    """Starts APIs on one store: in memory (each with its own worker process), or replicas of one
    Redis store sharing one worker host."""

    def __init__(self, store: str, root: Path, cluster: Cluster | None) -> None:
        self.store, self.root, self.cluster = store, root, cluster

    @contextmanager
    def api(self, **options):
        if self.cluster is None:
            results = self.root / f"results-{time.monotonic_ns()}"
            app = create_app(Settings(model=options.pop("model", FAST_MODEL), results_dir=str(results), **options))
        else:
            options.pop("model", None)
            app = create_app(Settings(store=self.cluster.redis.url, results_dir=str(self.cluster.results), **options))
        with thread_server(app) as base_url:
            yield base_url


@pytest.fixture(scope="module", params=["memory", "redis"])
def deployment(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    if request.param == "memory":
        yield Deployment("memory", root, None)
        return
    require_redis_server()
    with Cluster(root, model=FAST_MODEL) as cluster:
        cluster.start_worker()
        yield Deployment("redis", root, cluster)


@pytest.fixture(scope="module")
def hostile_routes():
    routes: dict[str, tuple[int, bytes, bytes]] = {
        "/good.png": (200, b"", make_png(64, 64)),
        "/http-x": (302, b"http:x", b""),
        "/to-http-x": (301, b"/http-x", b""),
    }
    for name, (raw, _) in PILLOW_CRASHERS.items():
        routes[f"/{name}.png"] = (200, b"", raw)
    with raw_host(routes) as host_url:
        yield host_url, routes


@pytest.fixture(scope="module")
def api(deployment):
    with deployment.api(max_queue=1000) as base_url:
        yield base_url


def assert_no_5xx(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        assert isinstance(response.json().get("error"), str), response.text[:300]


def outcome(base_url: str, image: str, timeout: float = 60) -> tuple[int, str]:
    """Submit through /v2 and follow the job to its end: (the submission's status code, then the
    final status) or (4xx, the error) when refused at submission."""
    submitted = submit(base_url, {**payload(), "image": image})
    assert_no_5xx(submitted)
    if submitted.status_code != 200:
        return submitted.status_code, submitted.json()["error"]
    final = wait_final(submitted.json()["status_url"], timeout=timeout)
    assert_no_5xx(final)
    body = final.json()
    assert body["status"] in FINAL
    return 200, body.get("error") or body["status"]


# ---- D2: inline crash files ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PILLOW_CRASHERS))
@pytest.mark.parametrize("encoding", ["base64", "data-uri"])
def test_inline_crash_files_get_400_naming_image_and_what_is_accepted(api, name, encoding):
    raw, _ = PILLOW_CRASHERS[name]
    text = base64.b64encode(raw).decode()
    image = text if encoding == "base64" else f"data:image/png;base64,{text}"
    for route in ("v1", "v2"):
        response = httpx.post(f"{api}/{route}/{SLUG}", json={**payload(), "image": image}, timeout=30)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error.startswith("image: ") and "accepted format" in error and "PNG" in error


# ---- D1: fetched crash files and unbuildable redirects ---------------------------------------


@pytest.mark.parametrize("path", ["/im.png", "/dds.png", "/spider.png", "/http-x", "/to-http-x"])
def test_fetched_crash_files_and_unbuildable_redirects_fail_the_job_naming_image(api, hostile_routes, path):
    host_url, _ = hostile_routes
    code, detail = outcome(api, host_url + path, timeout=30)
    # In memory the URL is fetched after acceptance (the job FAILS); a Redis replica fetches it
    # before queueing (400 at submission). Either way the message names the image.
    assert code in (200, 400) and detail.startswith("image: "), detail
    v1 = httpx.post(f"{api}/v1/{SLUG}", json={**payload(), "image": host_url + path}, timeout=60)
    assert v1.status_code == 400 and v1.json()["error"].startswith("image: "), v1.text
    assert outcome(api, host_url + "/good.png") == (200, "COMPLETED")


# ---- the stuck-queue scenario ----------------------------------------------------------------


def test_hostile_submissions_cannot_fill_the_queue_for_another_key(deployment, hostile_routes):
    host_url, _ = hostile_routes
    a, b = {"x-api-key": "key-a"}, {"x-api-key": "key-b"}
    with deployment.api(max_queue=5, api_keys="key-a,key-b") as base_url:
        hostile = ["/im.png", "/dds.png", "/spider.png", "/http-x", "/to-http-x"]
        accepted = []
        for path in hostile:
            response = submit(base_url, {**payload(), "image": host_url + path}, headers=a)
            assert_no_5xx(response)
            if response.status_code == 200:
                accepted.append(response.json())
            else:
                assert response.status_code == 400 and response.json()["error"].startswith("image: ")
        for job in accepted:
            final = wait_final(job["status_url"], headers=a, timeout=30)
            assert final.status_code == 422 and final.json()["status"] == "FAILED"
            assert final.json()["error"].startswith("image: "), final.json()
        other = submit(base_url, {**payload(), "image": host_url + "/good.png"}, headers=b)
        assert other.status_code == 200, other.text
        assert wait_final(other.json()["status_url"], headers=b).json()["status"] == "COMPLETED"


# ---- the property: any bytes, any redirect target --------------------------------------------

hostile_locations = st.one_of(
    st.sampled_from(
        [b"http:x", b"https:", b"http://", b"//", b"http://[::1", b"http://a b/", b"ftp://x/", b"file:///etc/passwd",
         b"http://169.254.169.254/", b"http://0/", b"http://x:99999/", b"\xff\xfe", b"/good.png", b"/im.png",
         b"?", b"#", b"http:/good.png", b"HTTP://127.0.0.1:1/"]
    ),
    st.binary(min_size=1, max_size=30).map(lambda raw: raw.replace(b"\r", b"").replace(b"\n", b"") or b"x"),
    st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=30).map(lambda text: b"http:" + text.encode()),
)
CRASH_FILES = [raw for raw, _ in PILLOW_CRASHERS.values()]
image_bytes = st.one_of(
    st.binary(min_size=1, max_size=300),
    st.sampled_from(CRASH_FILES),
    # a crash file or a PNG cut short, then random bytes
    st.tuples(st.sampled_from([*CRASH_FILES, make_png(16, 16)]), st.binary(max_size=40)).map(
        lambda pair: pair[0][: max(8, len(pair[0]) // 2)] + pair[1]
    ),
    st.just(make_png(16, 16)),
)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_any_bytes_and_any_redirect_end_in_a_final_state_without_a_5xx(api, hostile_routes, data):
    host_url, routes = hostile_routes
    raw = data.draw(image_bytes)
    how = data.draw(st.sampled_from(["inline", "url", "redirect"]))
    if how == "inline":
        image = base64.b64encode(raw).decode()
    else:
        key = f"/p{time.monotonic_ns()}"
        routes[key + ".img"] = (200, b"", raw)
        routes[key] = (302, data.draw(hostile_locations), b"")
        image = host_url + (key + ".img" if how == "url" else key)
    code, detail = outcome(api, image, timeout=60)
    assert code in (200, 400), (code, detail)
    if code == 400 or detail not in FINAL:
        assert "image" in detail or "webhook" in detail, detail


# ---- retention covers jobs that never end ----------------------------------------------------


def test_a_job_still_queued_one_ttl_after_submission_fails_and_v1_gets_503(tmp_path):
    settings_ = Settings(
        model=SCRIPTED_MODEL, results_dir=str(tmp_path), ttl_seconds=2.0, sweep_interval=0.5, job_timeout=6.0
    )
    with thread_server(create_app(settings_)) as base_url:
        running = submit(base_url, payload("hang")).json()  # holds the one worker
        started = time.monotonic()
        waiting = httpx.post(f"{base_url}/v1/{SLUG}", json=payload(), timeout=30)
        assert waiting.status_code == 503 and waiting.json()["error"].startswith("expired: still queued 2 s")
        assert time.monotonic() - started < 5
        assert wait_final(running["status_url"], timeout=30).json()["status"] == "FAILED"  # --job-timeout
        assert submit(base_url, payload()).status_code == 200


def test_a_redis_job_still_queued_one_ttl_after_submission_fails(tmp_path):
    require_redis_server()
    with Cluster(tmp_path) as cluster:  # no worker host: nothing ever takes the job
        options = Settings(
            store=cluster.redis.url, results_dir=str(cluster.results), ttl_seconds=2.0, sweep_interval=0.5
        )
        with thread_server(create_app(options), wait_ready=False) as base_url:
            started = time.monotonic()
            waiting = httpx.post(f"{base_url}/v1/{SLUG}", json=payload(), timeout=30)
            assert waiting.status_code == 503 and waiting.json()["error"].startswith("expired: still queued 2 s")
            assert time.monotonic() - started < 5
            job = submit(base_url, payload()).json()
            final = wait_final(job["status_url"], timeout=10)
            assert final.status_code == 422 and final.json()["error"].startswith("expired:")
            assert cluster.redis.client().zcard("ltx2:queued") == 0


# ---- the memory of downloads in flight is capped ---------------------------------------------


def test_image_downloads_in_flight_are_capped_with_429(deployment):
    with deployment.api(max_image_fetches=2, image_timeout=4.0, max_queue=1000) as base_url, drip_host() as slow:
        answers: list[httpx.Response] = []

        def send() -> None:
            answers.append(submit(base_url, {**payload(), "image": f"{slow}/slow.png"}))

        # A Redis replica downloads within the request, so the two first submissions are held open.
        holders = [threading.Thread(target=send) for _ in range(2)]
        for thread in holders:
            thread.start()
            time.sleep(0.5)
        refused = submit(base_url, {**payload(), "image": f"{slow}/slow.png"})
        assert refused.status_code == 429 and "image URLs are being downloaded" in refused.json()["error"]
        assert refused.headers["retry-after"] == "2"
        assert submit(base_url, payload()).status_code == 200  # inline images are not downloads
        for thread in holders:
            thread.join(30)
        for answer in answers:
            assert_no_5xx(answer)
            if answer.status_code == 200:  # in memory: accepted, then timed out fetching
                final = wait_final(answer.json()["status_url"], timeout=30).json()
                assert final["status"] == "FAILED" and "timed out after 4 s" in final["error"]
        # The slots are free again.
        with raw_host({"/a.png": (200, b"", make_png())}) as host_url:
            assert outcome(base_url, f"{host_url}/a.png") == (200, "COMPLETED")


def test_keyframe_urls_hold_download_slots_while_they_are_fetched(deployment):
    """A keyframe request's URLs are downloaded at submission, each holding one of --max-image-fetches' slots
    (never more than there are): meanwhile another URL submission gets 429; a slow URL is a 400 naming it."""
    with deployment.api(max_image_fetches=2, image_timeout=3.0, max_queue=1000) as base_url, drip_host() as slow:
        answers: list[httpx.Response] = []
        keyframes = [{"image": f"{slow}/k{index}.png", "frame": index + 1} for index in range(3)]

        def send() -> None:
            answers.append(submit(base_url, {**payload(), "image": f"{slow}/a.png", "keyframes": keyframes}))

        holder = threading.Thread(target=send)
        holder.start()
        time.sleep(1.0)
        refused = submit(base_url, {**payload(), "image": f"{slow}/b.png"})
        assert refused.status_code == 429 and "image URLs are being downloaded" in refused.json()["error"]
        holder.join(30)
        assert len(answers) == 1 and answers[0].status_code == 400
        assert re.match(r"(image|keyframes\[\d\]\.image): fetching .* timed out after 3 s", answers[0].json()["error"])
        assert submit(base_url, payload()).status_code == 200  # the slots are free again
