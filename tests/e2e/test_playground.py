"""The browser playground at / in headless Chromium (Debian's build, driven by Playwright), against a real server."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from server.api.app import create_app
from server.settings import Settings
from tests.support.api import SCRIPTED_MODEL
from tests.support.browser import CHROMIUM, chromium_context, have_chromium
from tests.support.servers import REPO_ROOT, make_png, thread_server

ARTIFACTS = REPO_ROOT / "test-artifacts"
API_KEY = "playground-key"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not have_chromium(), reason=f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    settings = Settings(model=SCRIPTED_MODEL, results_dir=str(tmp_path_factory.mktemp("results")), api_keys=API_KEY)
    with thread_server(create_app(settings)) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def browser():
    with chromium_context() as context:
        yield context


# Records every value the progress bar takes, so a fast job's movement is still seen.
RECORD_PROGRESS = """() => {
  window.__seen = [];
  const bar = document.getElementById('progress');
  new MutationObserver(() => window.__seen.push(Number(bar.value))).observe(bar, {attributes: true});
}"""


WIDE = {"width": 1280, "height": 800}
NARROW = {"width": 390, "height": 844}


def open_playground(browser, base_url: str, image: Path, viewport=WIDE):
    page = browser.new_page()
    page.set_viewport_size(viewport)
    page.goto(base_url + "/")
    page.wait_for_selector("#param-prompt")
    page.fill("#api-key", API_KEY)
    page.dispatch_event("#api-key", "change")
    page.set_input_files("#image-file", str(image))
    return page


def test_no_asset_comes_from_another_origin(server):
    html = httpx.get(server + "/").text
    assert "http://" not in html.replace("https://example.com", "") and "//cdn" not in html
    for asset in ("static/playground.js", "static/playground.css"):
        assert asset in html and httpx.get(f"{server}/{asset}").status_code == 200


def test_upload_generate_watch_progress_and_play_the_video(server, browser, tmp_path):
    image = tmp_path / "picture.png"
    image.write_bytes(make_png(320, 240))
    page = open_playground(browser, server, image)
    # Every parameter of the API is on the form, with the API's defaults.
    for name, default in [("width", "720"), ("height", "1280"), ("num_frames", "181"), ("fps", "24"), ("seed", "42")]:
        assert page.input_value(f"#param-{name}") == default
    assert page.input_value("#param-negative_prompt").startswith("blurry")
    for name, value in [("prompt", "slow waves"), ("width", "256"), ("height", "256"), ("num_frames", "16")]:
        page.fill(f"#param-{name}", value)
    page.fill("#param-fps", "8")
    page.evaluate(RECORD_PROGRESS)
    page.click("#submit")

    page.wait_for_function("document.getElementById('video').readyState >= 2", timeout=60_000)
    seen = page.evaluate("window.__seen")
    assert any(0 < value < 1 for value in seen) and seen[-1] == 1, seen
    assert seen == sorted(seen)
    video = page.evaluate(
        "(() => { const v = document.getElementById('video');"
        " return {w: v.videoWidth, h: v.videoHeight, muted: v.muted, duration: v.duration, src: v.currentSrc}; })()"
    )
    assert (video["w"], video["h"]) == (256, 256) and not video["muted"] and video["duration"] == pytest.approx(2, 0.1)
    assert page.get_attribute("#download", "href") == video["src"] and "/outputs/" in video["src"]
    assert page.is_hidden("#error")
    assert page.text_content("#stage") == "Done" and page.text_content("#progress-text") == ""
    assert page.evaluate("localStorage.getItem('ltx2-api-key')") == API_KEY
    # The size presets and the duration beside frames and fps.
    assert "16 frames at 8 fps: 2.0 s" in page.text_content("#duration-text")
    # The exact request, as code.
    assert "curl" in page.text_content("#snippet") and "x-api-key" in page.text_content("#snippet")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "playground.png"), full_page=True)
    page.screenshot(path=str(ARTIFACTS / "playground-1280x800.png"))
    page.click(".preset[data-width='1280']")
    assert (page.input_value("#param-width"), page.input_value("#param-height")) == ("1280", "720")

    # The job is in this browser's recent jobs, and reopens after a reload.
    page.reload()
    page.wait_for_selector("#param-prompt")
    page.click(".recent-job")
    page.wait_for_function("document.getElementById('video').readyState >= 2", timeout=30_000)
    assert page.get_attribute("#download", "href") == video["src"] and page.text_content("#stage") == "Done"
    page.close()


def test_a_failed_job_and_a_wrong_key_show_their_error_text(server, browser, tmp_path):
    image = tmp_path / "picture.png"
    image.write_bytes(make_png())
    page = open_playground(browser, server, image)
    for name, value in [("prompt", "please fail"), ("width", "256"), ("height", "256"), ("num_frames", "9")]:
        page.fill(f"#param-{name}", value)
    page.click("#submit")
    page.wait_for_selector("#error:not([hidden])", timeout=60_000)
    assert "scripted failure" in page.text_content("#error") and page.is_hidden("#video")
    assert page.text_content("#stage") == "Failed" and "0%" not in page.text_content("#job")

    page.fill("#api-key", "wrong")
    page.click("#submit")
    page.wait_for_function("document.getElementById('error').textContent.includes('invalid API key')")
    page.close()


def in_viewport(page, selector: str) -> bool:
    return page.evaluate(
        """(selector) => { const box = document.querySelector(selector).getBoundingClientRect();
        return box.height > 0 && box.top >= 0 && box.bottom <= window.innerHeight; }""",
        selector,
    )


@pytest.mark.parametrize("viewport", [WIDE, NARROW], ids=["1280x800", "390x844"])
def test_a_validation_error_shows_in_view_and_replaces_stale_state(server, browser, tmp_path, viewport):
    image = tmp_path / "picture.png"
    image.write_bytes(make_png())
    page = open_playground(browser, server, image, viewport)
    page.fill("#param-prompt", "too wide")
    page.evaluate("document.querySelector('#advanced').open = true")
    page.fill("#param-width", "9999")
    page.click("#submit")
    page.wait_for_selector("#error:not([hidden])")
    assert "width" in page.text_content("#error")
    assert "Submitting" not in page.text_content("#job") and page.text_content("#stage") == "Failed"
    assert in_viewport(page, "#error") and in_viewport(page, "#stage")
    page.screenshot(path=str(ARTIFACTS / f"playground-error-{viewport['width']}x{viewport['height']}.png"))
    page.close()


@pytest.mark.parametrize("viewport", [WIDE, NARROW], ids=["1280x800", "390x844"])
def test_the_status_stays_in_view_and_cancel_cancels(server, browser, tmp_path, viewport):
    image = tmp_path / "picture.png"
    image.write_bytes(make_png())
    page = open_playground(browser, server, image, viewport)
    for name, value in [("prompt", "100 steps"), ("width", "256"), ("height", "256"), ("num_frames", "9")]:
        page.fill(f"#param-{name}", value)
    page.click("#submit")
    page.wait_for_function("document.getElementById('progress-text').textContent.includes('step')", timeout=30_000)
    assert page.text_content("#stage") == "Denoising"
    assert in_viewport(page, "#stage") and in_viewport(page, "#progress") and in_viewport(page, "#cancel")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"playground-running-{viewport['width']}x{viewport['height']}.png"))
    request_id = page.text_content("#job-id").split()[-1]
    page.click("#cancel")
    page.wait_for_function("document.getElementById('stage').textContent === 'Cancelled'", timeout=30_000)
    assert page.is_hidden("#cancel") and page.is_hidden("#video")
    status = httpx.get(f"{server}/v2/requests/{request_id}/status", headers={"x-api-key": API_KEY}).json()
    assert status["status"] == "FAILED" and status.get("error") == "cancelled"
    page.close()


def test_fields_follow_what_the_server_offers(server, browser):
    page = browser.new_page()
    page.set_viewport_size(WIDE)
    # This server has keys and no webhook secret: the key field shows, the webhook field does not.
    page.goto(server + "/")
    page.wait_for_selector("#api-key", state="visible")
    page.evaluate("document.querySelector('#advanced').open = true")
    assert page.is_hidden("#field-webhook") and page.is_hidden("#test-model-banner")
    ready = httpx.get(server + "/ready").json()
    assert ready["auth_required"] is True and ready["webhooks"] is False
    # A keyless server that signs webhooks and runs the test model (as /ready would say).
    page.route(
        "**/ready",
        lambda route: route.fulfill(json={"ready": True, "test_model": True, "auth_required": False, "webhooks": True}),
    )
    page.goto(server + "/")
    page.wait_for_selector("#test-model-banner", state="visible")
    assert page.is_hidden("#key-box")
    page.evaluate("document.querySelector('#advanced').open = true")
    assert page.is_visible("#field-webhook")
    page.click("#seed-dice")
    assert page.input_value("#param-seed") != "42"
    page.screenshot(path=str(ARTIFACTS / "playground-test-model-1280x800.png"))
    page.close()
