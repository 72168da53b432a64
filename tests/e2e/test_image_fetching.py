"""Safe image fetching: schemes, resolved addresses (DNS tricks included), redirects, byte and pixel caps."""

from __future__ import annotations

import asyncio
import ipaddress

import httpx
import pytest

from server.api.app import create_app
from server.jobs.netguard import check_url, refusal_reason
from server.settings import Settings
from tests.support.api import SCRIPTED_MODEL, SLUG, payload, submit, wait_final
from tests.support.servers import drip_host, image_host, make_png, png_data_uri, thread_server


@pytest.mark.parametrize(
    "address,reason",
    [
        ("169.254.169.254", "a cloud metadata address"),
        ("fd00:ec2::254", "a cloud metadata address"),
        ("100.100.100.200", "a cloud metadata address"),
        ("::ffff:169.254.169.254", "a cloud metadata address"),
        ("64:ff9b::a9fe:a9fe", "a cloud metadata address"),
        ("169.254.1.1", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("0.0.0.0", "not a unicast address"),
        ("224.0.0.1", "not a unicast address"),
    ],
)
def test_metadata_link_local_and_non_unicast_addresses_are_always_refused(address, reason):
    assert refusal_reason(ipaddress.ip_address(address), block_private=False) == reason


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "192.168.0.9", "::1", "fd12::1", "100.64.0.1"])
def test_private_and_loopback_addresses_are_allowed_unless_blocked(address):
    assert refusal_reason(ipaddress.ip_address(address), block_private=False) is None
    assert "private or loopback" in refusal_reason(ipaddress.ip_address(address), block_private=True)


def test_public_addresses_pass():
    assert refusal_reason(ipaddress.ip_address("93.184.216.34"), block_private=True) is None


def test_every_resolved_address_is_checked():
    async def two_answers(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "169.254.169.254"]

    with pytest.raises(Exception, match="resolves to 169.254.169.254, a cloud metadata address"):
        asyncio.run(check_url("http://mixed.test/a.png", block_private=False, timeout=5, resolver=two_answers))


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """A scripted server whose resolver the tests can script; yields (base_url, app)."""
    app = create_app(Settings(model=SCRIPTED_MODEL, results_dir=str(tmp_path_factory.mktemp("r"))))
    with thread_server(app) as base_url:
        yield base_url, app


@pytest.mark.parametrize(
    "url,fragment",
    [
        ("file:///etc/passwd", "scheme 'file' is not allowed"),
        ("ftp://example.com/a.png", "scheme 'ftp' is not allowed"),
        ("gopher://example.com/", "scheme 'gopher' is not allowed"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254, a cloud metadata address"),
        ("http://2852039166/latest/meta-data/", "169.254.169.254, a cloud metadata address"),
        ("http://[::ffff:a9fe:a9fe]/", "a cloud metadata address"),
        ("http://[fe80::1]/a.png", "fe80::1, a link-local address"),
        ("http://0.0.0.0:8000/a.png", "not a unicast address"),
    ],
)
def test_refused_urls_get_400_at_submission_naming_the_reason(guarded, url, fragment):
    base_url, _ = guarded
    for version in ("v1", "v2"):
        response = httpx.post(f"{base_url}/{version}/{SLUG}", json={**payload(), "image": url}, timeout=30)
        assert response.status_code == 400
        assert response.json()["error"].startswith("image: ") and fragment in response.json()["error"]


def test_a_name_resolving_to_metadata_is_refused(guarded):
    base_url, app = guarded

    async def resolver(host: str, port: int) -> list[str]:
        return ["169.254.169.254"] if host == "innocent.test" else ["127.0.0.1"]

    app.state.service.intake.resolver = resolver
    try:
        response = submit(base_url, {**payload(), "image": "http://innocent.test/a.png"})
        assert response.status_code == 400
        assert "host innocent.test resolves to 169.254.169.254, a cloud metadata address" in response.json()["error"]
    finally:
        app.state.service.intake.resolver = None


def test_the_fetch_connects_to_the_address_it_checked_so_rebinding_fails(guarded):
    """The first lookup (at submission) says loopback, the next says metadata: the fetch re-resolves,
    re-checks, and refuses; a pinned name that stays put is fetched from the checked address."""
    base_url, app = guarded
    answers = {"rebind.test": ["127.0.0.1", "169.254.169.254"]}

    async def resolver(host: str, port: int) -> list[str]:
        if host == "rebind.test":
            return [answers[host].pop(0)]
        return ["127.0.0.1"]

    app.state.service.intake.resolver = resolver
    try:
        with image_host({"/a.png": (200, "image/png", make_png())}) as host_url:
            port = host_url.rsplit(":", 1)[1]
            rebound = submit(base_url, {**payload(), "image": f"http://rebind.test:{port}/a.png"})
            assert rebound.status_code == 200
            final = wait_final(rebound.json()["status_url"])
            assert final.status_code == 422 and "a cloud metadata address" in final.json()["error"]

            # No real DNS knows images.test: it is fetched because we connect to the address we checked.
            pinned = submit(base_url, {**payload(), "image": f"http://images.test:{port}/a.png"}).json()
            assert wait_final(pinned["status_url"]).json()["status"] == "COMPLETED"
    finally:
        app.state.service.intake.resolver = None


def test_redirects_are_rechecked_and_bounded(guarded):
    base_url, _ = guarded
    routes = {
        "/to-metadata": (302, "text/plain", b"http://169.254.169.254/latest/meta-data/"),
        "/loop": (302, "text/plain", b"/loop"),
        "/hop": (301, "text/plain", b"/a.png"),
        "/a.png": (200, "image/png", make_png()),
    }
    with image_host(routes) as host_url:
        refused = submit(base_url, {**payload(), "image": f"{host_url}/to-metadata"}).json()
        final = wait_final(refused["status_url"])
        assert final.status_code == 422 and "169.254.169.254, a cloud metadata address" in final.json()["error"]
        v1 = httpx.post(f"{base_url}/v1/{SLUG}", json={**payload(), "image": f"{host_url}/to-metadata"}, timeout=30)
        assert v1.status_code == 400 and "cloud metadata" in v1.json()["error"]

        looping = submit(base_url, {**payload(), "image": f"{host_url}/loop"}).json()
        assert "redirects more than 5 times" in wait_final(looping["status_url"]).json()["error"]

        followed = submit(base_url, {**payload(), "image": f"{host_url}/hop"}).json()
        assert wait_final(followed["status_url"]).json()["status"] == "COMPLETED"


def test_private_and_loopback_urls_refused_when_asked_and_pixel_cap(tmp_path):
    settings = Settings(
        model=SCRIPTED_MODEL, results_dir=str(tmp_path), block_private_image_urls=True, max_image_pixels=5000
    )
    with thread_server(create_app(settings)) as base_url:
        with image_host({"/a.png": (200, "image/png", make_png())}) as host_url:
            response = submit(base_url, {**payload(), "image": f"{host_url}/a.png"})
            assert response.status_code == 400
            assert "127.0.0.1, a private or loopback address" in response.json()["error"]
        too_many = submit(base_url, {**payload(), "image": png_data_uri(96, 64)})
        assert too_many.status_code == 400 and "96x64 is more than the 5000 pixel limit" in too_many.json()["error"]
        assert submit(base_url, {**payload(), "image": png_data_uri(64, 64)}).status_code == 200


def test_a_slow_drip_image_is_cut_off_by_the_total_timeout(tmp_path):
    settings = Settings(model=SCRIPTED_MODEL, results_dir=str(tmp_path), image_timeout=1.0)
    with thread_server(create_app(settings)) as base_url, drip_host() as host_url:
        job = submit(base_url, {**payload(), "image": f"{host_url}/slow.png"}).json()
        final = wait_final(job["status_url"], timeout=30)
        assert final.status_code == 422 and "timed out after 1 s" in final.json()["error"]
        assert submit(base_url, payload()).status_code == 200


def test_cancelling_a_job_whose_image_is_still_downloading_stops_the_download(tmp_path):
    settings = Settings(model=SCRIPTED_MODEL, results_dir=str(tmp_path), image_timeout=60.0)
    app = create_app(settings)
    with thread_server(app) as base_url, drip_host() as host_url:
        job = submit(base_url, {**payload(), "image": f"{host_url}/slow.png"}).json()
        fetches = app.state.service.intake.fetches
        assert job["request_id"] in fetches
        cancelled = httpx.delete(job["response_url"])
        assert cancelled.status_code == 200 and cancelled.json()["error"] == "cancelled"
        assert job["request_id"] not in fetches
        assert httpx.get(job["status_url"]).json()["error"] == "cancelled"
