"""The browser playground at / in headless Chromium (Debian's build, driven by Playwright), against a real server."""

from __future__ import annotations

import ast
import base64
import io
import json
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from server.api.app import create_app
from server.settings import Settings
from tests.support.api import SCRIPTED_MODEL, wait_for
from tests.support.browser import CHROMIUM, chromium_context, have_chromium
from tests.support.enhancing_generators import ENHANCED_SUFFIX
from tests.support.servers import REPO_ROOT, make_png, thread_server

ARTIFACTS = REPO_ROOT / "test-artifacts"
API_KEY = "playground-key"
ENHANCING_MODEL = "tests.support.enhancing_generators:enhancing"

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


def open_playground(browser, base_url: str, image: Path | None, viewport=WIDE, key: str | None = API_KEY):
    page = browser.new_page()
    page.set_viewport_size(viewport)
    page.goto(base_url + "/")
    page.wait_for_selector("#param-prompt")
    if key:
        page.fill("#api-key", key)
        page.dispatch_event("#api-key", "change")
    if image:
        page.set_input_files("#image-file", str(image))
    return page


def fill_small_job(page, prompt: str) -> None:
    page.fill("#param-prompt", prompt)
    for name, value in [("width", "256"), ("height", "256"), ("num_frames", "9"), ("fps", "8")]:
        page.fill(f"#param-{name}", value)


def submit_and_capture(page) -> dict:
    """Clicks Generate; returns the JSON body the page POSTed."""
    with page.expect_request(lambda request: request.method == "POST" and "/v2/" in request.url) as posted:
        page.click("#submit")
    return json.loads(posted.value.post_data)


def wait_until_done(page) -> None:
    page.wait_for_function("document.getElementById('stage').textContent === 'Done'", timeout=60_000)


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
    # Both modes, keyframes and prompt enhancement; no LoRAs (no --loras) and no content policy.
    assert page.is_visible("#mode-box") and page.is_visible("#keyframes-box") and page.is_visible("#enhance-box")
    assert page.is_hidden("#loras-box") and page.is_hidden("#content-policy-note")
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
    # A server that does not list its capabilities offers plain image-to-video: no switch, no extras.
    assert page.is_hidden("#mode-box") and page.is_visible("#drop-zone") and page.is_hidden("#keyframes-box")
    assert page.is_hidden("#enhance-box") and page.is_hidden("#loras-box")
    page.screenshot(path=str(ARTIFACTS / "playground-test-model-1280x800.png"))
    # A server offering text-to-video only: no switch and no picture.
    only_t2v = {**ready, "capabilities": {**ready["capabilities"], "models": [ready["capabilities"]["models"][1]]}}
    page.route("**/ready", lambda route: route.fulfill(json=only_t2v))
    page.goto(server + "/")
    page.wait_for_selector("#param-prompt")
    page.wait_for_selector("#drop-zone", state="hidden")
    assert page.is_hidden("#mode-box") and page.is_hidden("#keyframes-box") and page.is_visible("#enhance-box")
    page.close()


def test_copy_as_curl_and_as_python_put_the_request_sent_on_the_clipboard(server, browser, tmp_path):
    # Both snippets carry the request exactly as the page sent it (the picture whole), and both run.
    browser.grant_permissions(["clipboard-read", "clipboard-write"], origin=server)
    image = tmp_path / "picture.png"
    image.write_bytes(make_png())
    page = open_playground(browser, server, image)
    prompt = "the keeper's lighthouse at dusk"
    fill_small_job(page, prompt)
    sent = submit_and_capture(page)
    wait_until_done(page)

    page.click("#code summary")  # "This request as code"
    page.click("#copy-curl")
    page.wait_for_function("document.getElementById('copy-curl').textContent === 'Copied'")
    curl = page.evaluate("navigator.clipboard.readText()")
    assert curl.startswith(f"curl -sS -X POST '{server}/v2/ltx-2-19b-i2v'")
    assert prompt.replace("'", "'\\''") in curl and "-H 'x-api-key: YOUR_KEY'" in curl
    assert json.loads(curl.split(" -d '", 1)[1].removesuffix("'").replace("'\\''", "'")) == sent
    answer = subprocess.run(["bash", "-c", curl.replace("YOUR_KEY", API_KEY)], capture_output=True, text=True)
    assert answer.returncode == 0 and json.loads(answer.stdout)["status"] == "QUEUED", answer

    page.click("#copy-python")
    page.wait_for_function("document.getElementById('copy-python').textContent === 'Copied'")
    python = page.evaluate("navigator.clipboard.readText()")
    assert "from segmind import SegmindClient" in python and f'base_url="{server}/v1"' in python
    assert prompt in python and python.startswith("from segmind import SegmindClient")
    assert submitted_keywords(python) == sent
    assert "SegmindClient" in page.text_content("#snippet")  # the snippet shows the one copied
    run = subprocess.run(
        [sys.executable, "-c", python.replace("YOUR_KEY", API_KEY)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0 and run.stdout.startswith(f"COMPLETED {server}/outputs/"), run
    page.close()


def submitted_keywords(python: str) -> dict:
    """The keyword arguments of the snippet's submit_async call, after its slug."""
    call = next(
        node
        for node in ast.walk(ast.parse(python))
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "submit_async"
    )
    return {keyword.arg: ast.literal_eval(keyword.value) for keyword in call.keywords}


# A picture drawn in the page (left half red, right half blue), dropped on a drop zone (the picture's unless
# told) as a user's file manager would: dragenter, dragover, then drop, each a DragEvent carrying a DataTransfer.
DROP_A_PICTURE = """async (zoneSelector) => {
  const canvas = document.createElement('canvas');
  canvas.width = 64; canvas.height = 48;
  const context = canvas.getContext('2d');
  context.fillStyle = '#ff0000'; context.fillRect(0, 0, 32, 48);
  context.fillStyle = '#0000ff'; context.fillRect(32, 0, 32, 48);
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, 'image/png'));
  const transfer = new DataTransfer();
  transfer.items.add(new File([blob], 'dropped.png', {type: 'image/png'}));
  const zone = document.querySelector(zoneSelector || '#drop-zone');
  for (const type of ['dragenter', 'dragover', 'drop']) {
    zone.dispatchEvent(new DragEvent(type, {dataTransfer: transfer, bubbles: true, cancelable: true}));
  }
}"""


def test_a_picture_dropped_on_the_drop_zone_is_previewed_and_sent(server, browser):
    from PIL import Image

    page = open_playground(browser, server, image=None)
    page.fill("#image-url", "https://example.com/not-this-one.png")
    page.evaluate(DROP_A_PICTURE)
    page.wait_for_function("document.getElementById('image-preview').naturalWidth === 64")
    assert page.is_visible("#image-preview") and "dropped.png" in page.text_content("#drop-text")
    assert page.input_value("#image-url") == ""  # the dropped file replaces a URL typed before
    fill_small_job(page, "a dropped picture")
    sent = submit_and_capture(page)
    assert sent["image"].startswith("data:image/png;base64,")
    picture = Image.open(io.BytesIO(base64.b64decode(sent["image"].split(",", 1)[1]))).convert("RGB")
    assert picture.size == (64, 48)
    assert picture.getpixel((8, 24)) == (255, 0, 0) and picture.getpixel((56, 24)) == (0, 0, 255)
    wait_until_done(page)
    assert page.is_hidden("#error") and page.is_visible("#video")
    page.close()


def test_a_recent_job_the_server_no_longer_keeps_is_marked_expired(browser, tmp_path):
    # A job that outlived this server's --ttl-seconds, and an id the server never knew (another
    # server's): both are marked expired when the page loads, before anyone clicks them.
    settings = Settings(model=SCRIPTED_MODEL, results_dir=str(tmp_path / "results"), ttl_seconds=3, sweep_interval=0.5)
    with thread_server(create_app(settings)) as base_url:
        image = tmp_path / "picture.png"
        image.write_bytes(make_png())
        page = open_playground(browser, base_url, image, key=None)
        fill_small_job(page, "soon forgotten")
        page.click("#submit")
        wait_until_done(page)
        request_id = page.text_content("#job-id").split()[-1]
        page.evaluate(
            """() => {
              const recent = JSON.parse(localStorage.getItem('ltx2-recent-jobs'));
              recent.push({id: '00000000-0000-4000-8000-000000000000', prompt: 'from another server',
                           at: Date.now(), status: 'COMPLETED'});
              localStorage.setItem('ltx2-recent-jobs', JSON.stringify(recent));
            }"""
        )
        status_url = f"{base_url}/v2/requests/{request_id}/status"
        wait_for(lambda: httpx.get(status_url).status_code == 404, timeout=15)
        page.reload()
        page.wait_for_function(
            "[...document.querySelectorAll('.recent-job')].filter((b) => b.classList.contains('expired')).length === 2"
        )
        labels = page.eval_on_selector_all(".recent-job", "buttons => buttons.map((b) => b.textContent)")
        assert len(labels) == 2 and all(" · expired · " in label for label in labels), labels
        page.click(f".recent-job[data-id='{request_id}']")
        page.wait_for_selector("#error:not([hidden])")
        assert "not found" in page.text_content("#error") and "--ttl-seconds" in page.text_content("#error")
        page.close()


def test_the_screenshot_script_writes_both_views_small_enough_to_commit(tmp_path):
    # scripts/playground_screenshots.py makes docs/images/: a real tiny-model server, a finished job.
    from PIL import Image

    run = subprocess.run(
        [sys.executable, "scripts/playground_screenshots.py", "--out", str(tmp_path), "--chromium", CHROMIUM],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    for name, size in [("playground-1280x800.png", (1280, 800)), ("playground-390x844.png", (390, 844))]:
        path = tmp_path / name
        assert 0 < path.stat().st_size < 300_000 and f"wrote {path}" in run.stdout
        with Image.open(path) as image:
            assert image.size == size
        assert (REPO_ROOT / "docs" / "images" / name).is_file()


def copied(page, button: str) -> str:
    """Clicks a "Copy as ..." button; the text it put on the clipboard."""
    page.click(button)
    page.wait_for_function(f"document.querySelector('{button}').textContent === 'Copied'")
    return page.evaluate("navigator.clipboard.readText()")


def curl_body(curl: str) -> dict:
    return json.loads(curl.split(" -d '", 1)[1].removesuffix("'").replace("'\\''", "'"))


def submitted_slug(python: str) -> str:
    call = next(
        node
        for node in ast.walk(ast.parse(python))
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "submit_async"
    )
    return ast.literal_eval(call.args[0])


def test_text_to_video_mode_sends_no_picture_to_the_t2v_slug(server, browser):
    browser.grant_permissions(["clipboard-read", "clipboard-write"], origin=server)
    page = open_playground(browser, server, image=None)
    page.wait_for_selector("#mode-box", state="visible")
    assert page.is_checked("input[name=mode][value=i2v]") and page.is_visible("#drop-zone")
    page.click("#add-keyframe")  # a keyframe row left over from image-to-video is not sent
    page.check("input[name=mode][value=t2v]")
    assert page.is_hidden("#drop-zone") and page.is_hidden("#image-url") and page.is_hidden("#keyframes-box")
    fill_small_job(page, "a lighthouse from nothing but words")
    with page.expect_request(lambda request: request.method == "POST" and "/v2/" in request.url) as posted:
        page.click("#submit")
    assert posted.value.url == f"{server}/v2/ltx-2-19b-t2v"
    sent = json.loads(posted.value.post_data)
    assert "image" not in sent and "keyframes" not in sent and sent["prompt"] == "a lighthouse from nothing but words"
    wait_until_done(page)
    assert page.is_hidden("#error") and page.is_visible("#video") and page.is_hidden("#enhanced-box")
    assert " · t2v · a lighthouse" in page.text_content(".recent-job")

    page.click("#code summary")
    curl = copied(page, "#copy-curl")
    assert curl.startswith(f"curl -sS -X POST '{server}/v2/ltx-2-19b-t2v'") and curl_body(curl) == sent
    python = copied(page, "#copy-python")
    assert submitted_slug(python) == "ltx-2-19b-t2v" and submitted_keywords(python) == sent
    page.close()


def test_keyframe_rows_are_checked_in_the_page_and_sent_with_their_pictures(server, browser, tmp_path):
    image, keyframe_image = tmp_path / "picture.png", tmp_path / "keyframe.png"
    image.write_bytes(make_png())
    keyframe_image.write_bytes(make_png(80, 48))
    page = open_playground(browser, server, image)
    fill_small_job(page, "from one picture to the next")  # 9 frames: keyframes at 1 to 8
    page.wait_for_selector("#keyframes-box", state="visible")
    assert "Up to 8" in page.text_content("#keyframes-box")
    page.click("#add-keyframe")
    assert page.input_value(".keyframe-frame") == "8" and page.input_value(".keyframe-strength") == "1"
    page.set_input_files(".keyframe-image", str(keyframe_image))
    page.wait_for_function("document.querySelector('.keyframe-zone img').naturalWidth === 80")

    # A frame outside the clip is named in the page, before anything is sent.
    posts = []
    page.on("request", lambda request: posts.append(request.url) if request.method == "POST" else None)
    page.fill(".keyframe-frame", "9")
    page.click("#submit")
    page.wait_for_selector("#error:not([hidden])")
    assert page.text_content("#error") == (
        "keyframes[0].frame: must be an integer from 1 to 8 (below num_frames 9); got 9"
    )
    assert posts == []
    # Two keyframes at one frame: the server's 400, shown as it is.
    page.fill(".keyframe-frame", "4")
    page.click("#add-keyframe")
    second = page.locator(".keyframe").nth(1)
    page.evaluate(DROP_A_PICTURE, ".keyframe:nth-child(2) .keyframe-zone")  # dropped, like the main picture
    assert "dropped.png" in second.locator(".keyframe-zone").text_content()
    second.locator(".keyframe-frame").fill("4")
    page.click("#submit")
    page.wait_for_function("document.getElementById('error').textContent.includes('has a keyframe already')")
    assert page.text_content("#error") == "keyframes[1].frame: frame 4 has a keyframe already"
    assert posts == [f"{server}/v2/ltx-2-19b-i2v"]

    second.locator(".keyframe-remove").click()
    page.fill(".keyframe-strength", "0.6")
    assert page.input_value(".keyframe-strength-slider") == "0.6"
    sent = submit_and_capture(page)
    wait_until_done(page)
    assert page.is_hidden("#error") and page.is_visible("#video")
    assert [{name: value for name, value in item.items() if name != "image"} for item in sent["keyframes"]] == [
        {"frame": 4, "strength": 0.6}
    ]
    mime, data = sent["keyframes"][0]["image"].split(",", 1)
    assert mime == "data:image/png;base64" and base64.b64decode(data) == keyframe_image.read_bytes()
    # The code snippets carry the keyframes too, the pictures whole on the clipboard and abbreviated on screen.
    browser.grant_permissions(["clipboard-read", "clipboard-write"], origin=server)
    page.click("#code summary")
    assert curl_body(copied(page, "#copy-curl")) == sent
    assert submitted_keywords(copied(page, "#copy-python")) == sent
    assert "(the picture)" in page.text_content("#snippet") and len(page.text_content("#snippet")) < 2000

    # No more rows than the server takes.
    for _ in range(7):
        page.click("#add-keyframe")
    assert page.locator(".keyframe").count() == 8 and page.is_disabled("#add-keyframe")
    page.close()


LORA_NAMES = ["camera-dolly", "detail", "film-grain", "pixel-art", "watercolour"]


@pytest.fixture(scope="module")
def offering_server(tmp_path_factory):
    """A keyless server with five LoRAs (--loras), a word-list content policy and a generator that answers
    enhance_prompt; the fixture generator loads no LoRA, so tiny files with the right header do."""
    from safetensors.numpy import save_file

    folder = tmp_path_factory.mktemp("loras")
    for name in LORA_NAMES:
        tensors = {
            "transformer_blocks.0.attn1.to_q.lora_A.weight": np.zeros((4, 32), np.float32),
            "transformer_blocks.0.attn1.to_q.lora_B.weight": np.zeros((32, 4), np.float32),
        }
        save_file(tensors, str(folder / f"{name}.safetensors"))
    words = tmp_path_factory.mktemp("policy") / "words.txt"
    words.write_text("zebra stripes\n", encoding="utf-8")
    settings = Settings(
        model=ENHANCING_MODEL,
        results_dir=str(tmp_path_factory.mktemp("results")),
        loras=str(folder),
        moderation=f"wordlist:{words}",
    )
    with thread_server(create_app(settings)) as base_url:
        yield base_url


def test_the_lora_picker_and_enhance_prompt_are_sent_and_the_enhanced_prompt_shown(offering_server, browser, tmp_path):
    browser.grant_permissions(["clipboard-read", "clipboard-write"], origin=offering_server)
    image = tmp_path / "picture.png"
    image.write_bytes(make_png())
    page = open_playground(browser, offering_server, image, key=None)
    page.wait_for_selector("#loras-box", state="visible")
    assert page.eval_on_selector_all("#loras .lora", "rows => rows.map((row) => row.dataset.name)") == LORA_NAMES
    assert "rank 4" in page.text_content(".lora[data-name='detail']")
    assert "up to 4" in page.text_content("#loras-limit") and page.is_visible("#content-policy-note")
    # At most max_per_request of them.
    for name in LORA_NAMES[:4]:
        page.check(f".lora[data-name='{name}'] .lora-use")
    assert page.is_disabled(".lora[data-name='watercolour'] .lora-use")
    for name in LORA_NAMES[1:4]:
        page.uncheck(f".lora[data-name='{name}'] .lora-use")
    assert page.is_enabled(".lora[data-name='watercolour'] .lora-use")
    page.fill(".lora[data-name='camera-dolly'] .lora-scale", "0.5")
    page.check("#param-enhance_prompt")
    fill_small_job(page, "a dog runs on the beach")
    sent = submit_and_capture(page)
    assert sent["loras"] == [{"name": "camera-dolly", "scale": 0.5}] and sent["enhance_prompt"] is True
    wait_until_done(page)
    page.wait_for_selector("#enhanced-box", state="visible")
    assert page.text_content("#enhanced-prompt") == "a dog runs on the beach" + ENHANCED_SUFFIX

    page.click("#code summary")
    python = copied(page, "#copy-python")
    assert "enhance_prompt=True," in python and submitted_keywords(python) == sent
    run = subprocess.run([sys.executable, "-c", python], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.startswith(f"COMPLETED {offering_server}/outputs/"), run
    assert curl_body(copied(page, "#copy-curl")) == sent

    # A prompt the content policy refuses fails like any job, its error shown as the server words it.
    page.fill("#param-prompt", "zebra stripes at noon")
    page.click("#submit")
    page.wait_for_selector("#error:not([hidden])", timeout=60_000)
    assert page.text_content("#error") == "content blocked: prompt: contains a blocked term"
    assert page.text_content("#stage") == "Failed" and page.is_hidden("#video") and page.is_hidden("#enhanced-box")
    page.close()
