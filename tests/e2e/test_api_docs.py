"""/docs (Swagger UI) and /redoc in headless Chromium: they render the API from files the server ships,
and no request of the page leaves the server's own host (the docs work without internet access)."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.browser import CHROMIUM, chromium_context, have_chromium

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not have_chromium(), reason=f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def browser():
    with chromium_context() as context:
        yield context


def open_recording(browser, url: str):
    page = browser.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("requestfailed", lambda request: requested.append(request.url))
    page.goto(url)
    return page, requested


def assert_all_local(requested: list[str], base_url: str) -> None:
    own = urlsplit(base_url).netloc
    # blob:http://127.0.0.1:PORT/... is the page's own object URL (ReDoc's worker)
    urls = [url.removeprefix("blob:") for url in requested if not url.startswith("data:")]
    foreign = [url for url in urls if urlsplit(url).netloc != own]
    assert not foreign, foreign
    assert requested, "the page made no request at all"


def test_swagger_ui_renders_the_operations_from_local_files(scripted_server, browser):
    page, requested = open_recording(browser, scripted_server + "/docs")
    page.wait_for_selector(".opblock", timeout=30_000)
    assert page.locator(".opblock").count() >= 5
    assert page.locator(".opblock-summary-path", has_text="/v2/ltx-2-19b-i2v").count() >= 1
    page.wait_for_load_state("networkidle")
    assert any(url.endswith("/openapi.json") for url in requested)
    assert_all_local(requested, scripted_server)
    page.close()


def test_redoc_renders_from_local_files_without_google_fonts(scripted_server, browser):
    page, requested = open_recording(browser, scripted_server + "/redoc")
    page.wait_for_selector("[data-section-id^='operation/']", timeout=30_000)
    assert page.locator("[data-section-id^='operation/']").count() >= 5
    page.wait_for_load_state("networkidle")
    assert any(url.endswith("/openapi.json") for url in requested)
    assert_all_local(requested, scripted_server)
    page.close()


def test_the_docs_pages_name_no_other_host_and_stay_out_of_the_schema(scripted_server):
    for path in ("/docs", "/redoc"):
        html = httpx.get(scripted_server + path).text
        assert "cdn.jsdelivr" not in html and "fonts.googleapis" not in html and "https://" not in html, path
    for asset in ("swagger-ui/swagger-ui-bundle.js", "swagger-ui/swagger-ui.css", "redoc/redoc.standalone.js"):
        assert httpx.get(f"{scripted_server}/static/vendor/{asset}").status_code == 200, asset
    paths = httpx.get(scripted_server + "/openapi.json").json()["paths"]
    assert "/docs" not in paths and "/redoc" not in paths
