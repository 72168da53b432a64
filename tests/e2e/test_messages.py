"""The answers' wording, through a real server on loopback: a file that is not an image, invalid JSON (where
it breaks), the seed's range, an unknown or expired id (how long results are kept), the fields a body
carried that the model ignores (x-ignored-fields, declared in /openapi.json), and a weights folder with many
missing files (its fix: line once)."""

from __future__ import annotations

import base64
import re
import subprocess
import sys

import httpx

from tests.support.api import SLUG, payload, submit
from tests.support.browser import chromium_context, have_chromium
from tests.support.servers import REPO_ROOT, image_host

NOT_AN_IMAGE = b"hello, this is a text file and not a picture\n"


def assert_clean(message: str) -> None:
    assert "BytesIO" not in message and not re.search(r"0x[0-9a-f]{6,}", message), message


def test_a_file_that_is_not_an_image_is_refused_in_plain_words(scripted_server):
    encoded = base64.b64encode(NOT_AN_IMAGE).decode()
    inline = [encoded, "data:image/png;base64," + encoded]
    for image in inline:
        response = submit(scripted_server, payload(image=image))
        assert response.status_code == 400
        message = response.json()["error"]
        assert message.startswith("image: cannot be decoded as an image") and "PNG, JPEG" in message
        assert_clean(message)
    with image_host({"/fake.png": (200, "image/png", NOT_AN_IMAGE)}) as host:
        response = submit(scripted_server, payload(image=f"{host}/fake.png"))
        if response.status_code == 200:  # the download is checked after the answer: the job fails
            from tests.support.api import wait_final

            final = wait_final(response.json()["status_url"]).json()
            assert final["status"] == "FAILED"
            message = final["error"]
        else:
            message = response.json()["error"]
    assert "cannot be decoded as an image" in message
    assert_clean(message)


def test_invalid_json_is_answered_with_where_it_breaks(scripted_server):
    body = b'{"prompt": "waves",\n  "seed": 7,,\n  "fps": 8}'
    for path in (f"/v2/{SLUG}", f"/v1/{SLUG}"):
        response = httpx.post(scripted_server + path, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400
        assert response.json()["error"] == (
            "request body is not valid JSON: Expecting property name enclosed in double quotes "
            "at line 2, column 13 (character 33)"
        )


def test_the_seed_range_reads_minus_one_or_zero_to_the_maximum(scripted_server):
    response = submit(scripted_server, payload(seed=-2))
    assert response.json()["error"] == "seed: must be an integer: -1, or 0 to 4294967295; got -2"


def test_an_unknown_id_keeps_the_contract_text_and_says_how_long_results_are_kept(scripted_server):
    for path in ("/v2/requests/nope/status", "/v1/requests/nope"):
        response = httpx.get(scripted_server + path)
        assert response.status_code == 404
        assert response.json() == {
            "error": "Request nope not found (results are kept for 3600 s after submission: --ttl-seconds)"
        }


def test_unknown_fields_are_accepted_and_named_in_a_header(scripted_server):
    response = submit(scripted_server, payload(foo=1, bar="x", base64=False))
    assert response.status_code == 200
    assert response.headers["x-ignored-fields"] == "foo, bar, base64"
    assert "x-ignored-fields" not in submit(scripted_server, payload()).headers
    # Names that are not plain ASCII come percent-encoded (a header is ASCII).
    odd = submit(scripted_server, payload(**{"naïve field": 1}))
    assert odd.headers["x-ignored-fields"] == "na%C3%AFve%20field"
    document = httpx.get(scripted_server + "/openapi.json").json()
    for path in (f"/v2/{SLUG}", f"/v1/{SLUG}"):
        answer = document["paths"][path]["post"]["responses"]["200"]
        assert answer["headers"]["x-ignored-fields"]["schema"] == {"type": "string"}


def test_missing_weights_print_the_fix_once(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "server.cli", "serve", "--model", "ltx-2-19b", "--weights", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode != 0
    assert completed.stderr.count("missing") > 5
    assert completed.stderr.count("fix:") == 1
    assert f"fix: python scripts/download_weights.py --dest {tmp_path}" in completed.stderr


def test_the_playground_shows_the_seed_range_as_minus_one_or_zero_to_the_maximum(scripted_server):
    if not have_chromium():
        return
    with chromium_context() as browser:
        page = browser.new_page()
        page.goto(scripted_server + "/")
        page.wait_for_selector("#param-seed", state="attached")  # inside the closed Advanced fold
        hints = page.evaluate(
            "(() => Object.fromEntries(['seed', 'width'].map(n => "
            "[n, document.getElementById('param-' + n).closest('label').querySelector('.hint').textContent])))()"
        )
        page.close()
    assert hints["seed"].endswith("(-1, or 0 to 4294967295)"), hints
    assert hints["width"].endswith(" to 1280)") and "-" not in hints["width"].rsplit("(", 1)[1], hints
