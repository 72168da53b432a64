"""The OpenAPI document at /openapi.json tells the whole truth, proven by a third party: schemathesis
(every check, every phase, the stateful one included) against a real uvicorn with the scripted
generator and API keys on, with zero failures. The few exceptions it is configured with
(tests/support/schemathesis_setup/schemathesis.toml) are Segmind's behaviour, asserted here and in the
contract tests. Also: the document's shape where generated clients and gateways read it, the
no-keys variant, and `Allow` on every path."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import httpx
import pytest

from server.api.app import create_app
from server.settings import Settings
from tests.support.lora_files import write_tiny_lora_file
from tests.support.schemathesis_setup.hooks import LORA_NAME
from tests.support.servers import REPO_ROOT, png_data_uri, thread_server

SCRIPTED_MODEL = "tests.support.fixture_generators:scripted"
KEY = "k-schemathesis-0123456789"
SETUP = REPO_ROOT / "tests" / "support" / "schemathesis_setup"
# Examples per operation and phase: about a minute on 2 CPU cores. LTX2_SCHEMATHESIS_EXAMPLES and
# LTX2_SCHEMATHESIS_SEED run it longer or with other data.
MAX_EXAMPLES = int(os.environ.get("LTX2_SCHEMATHESIS_EXAMPLES", "20"))
SEED = os.environ.get("LTX2_SCHEMATHESIS_SEED", "20261130")
PHASES = ("Examples", "Coverage", "Fuzzing", "Stateful")


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory):
    """Keys on (so ignored_auth has something to prove), a webhook secret (so a webhook URL is a
    valid parameter), no rate limit and a deep queue (so the run is not throttled)."""
    loras = tmp_path_factory.mktemp("loras")
    write_tiny_lora_file(loras / f"{LORA_NAME}.safetensors")
    settings = Settings(
        loras=str(loras),
        model=SCRIPTED_MODEL,
        results_dir=str(tmp_path_factory.mktemp("results")),
        api_keys=KEY,
        webhook_secret="schemathesis-secret",
        rate_limit=0,
        max_queue=1000,
    )
    with thread_server(create_app(settings)) as base_url:
        yield base_url


def document(base_url: str) -> dict:
    return httpx.get(f"{base_url}/openapi.json", timeout=10).json()


def operations(spec: dict):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def test_schemathesis_finds_nothing(keyed_server, tmp_path):
    spec = document(keyed_server)
    command = [
        sys.executable, "-m", "schemathesis.cli",
        "--config-file", str(SETUP / "schemathesis.toml"),
        "run", f"{keyed_server}/openapi.json",
        "--header", f"x-api-key: {KEY}",
        "--max-examples", str(MAX_EXAMPLES),
        "--seed", SEED,
        "--request-timeout", "120",
        "--report", "junit", "--report-dir", str(tmp_path / "report"),
    ]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "SCHEMATHESIS_HOOKS": "tests.support.schemathesis_setup.hooks",
        "NO_COLOR": "1",
    }
    started = time.monotonic()
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=480)
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    summary = output[output.rfind("SUMMARY") :] if "SUMMARY" in output else output[-3000:]
    print(f"schemathesis ({elapsed:.0f} s):\n{summary}")
    assert result.returncode == 0, output[-12000:]
    tested = re.search(r"Tested: (\d+)", summary)
    assert tested and int(tested.group(1)) == len(list(operations(spec))), summary
    for phase in PHASES:  # each phase ran and passed: none was skipped as "not applicable"
        assert re.search(rf"✅ {phase}\b", summary), f"phase {phase} did not pass:\n{summary}"
    cases = re.search(r"(\d+) generated, (\d+) passed", summary)
    assert cases and int(cases.group(1)) > 300 and cases.group(1) == cases.group(2), summary


def test_a_cancelled_job_stays_readable_as_segmind_requires(keyed_server):
    """The behaviour behind the use_after_free exception: after a DELETE the job is still there,
    FAILED with error "cancelled", on every read route (status and result 422, the stream's last
    event), because Segmind's clients learn that a job ended only by reading it."""
    headers = {"x-api-key": KEY}
    with httpx.Client(base_url=keyed_server, headers=headers, timeout=60) as client:
        submitted = client.post("/v2/ltx-2-19b-i2v", json={"image": png_data_uri(16, 16), "prompt": "steps"})
        assert submitted.status_code == 200, submitted.text
        job_id = submitted.json()["request_id"]
        cancelled = client.delete(f"/v2/requests/{job_id}")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "FAILED" and cancelled.json()["error"] == "cancelled"
        for path in (f"/v2/requests/{job_id}/status", f"/v2/requests/{job_id}", f"/v1/requests/{job_id}"):
            read = client.get(path)
            assert read.status_code == 422, (path, read.text)
            assert read.json()["status"] == "FAILED" and read.json()["error"] == "cancelled"
            assert read.json()["request_id"] == job_id
        events = client.get(f"/v2/requests/{job_id}/events")
        assert events.status_code == 200
        assert '"status":"FAILED"' in events.text.strip().splitlines()[-1]
        # Again: the same answer, not 404 (and not 409: it was cancelled, not finished).
        assert client.delete(f"/v2/requests/{job_id}").json()["error"] == "cancelled"


def test_the_document_declares_bodies_statuses_and_the_key(keyed_server):
    spec = document(keyed_server)
    schemas = spec["components"]["schemas"]
    assert not {"HTTPValidationError", "ValidationError"} & set(schemas)
    assert spec["components"]["securitySchemes"]["ApiKeyAuth"] == {
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
        "description": spec["components"]["securitySchemes"]["ApiKeyAuth"]["description"],
    }
    declared: dict[tuple[str, str], set[str]] = {}
    for method, path, operation in operations(spec):
        responses = operation["responses"]
        declared[method, path] = set(responses)
        assert all(parameter["in"] != "header" for parameter in operation.get("parameters", []))
        ok = responses["200"]["content"]
        assert any(media.get("schema") for media in ok.values()), (method, path, ok)
        assert ok.get("application/json", {}).get("schema") != {}, (method, path)
        for status, answer in responses.items():
            if status.startswith(("4", "5")) and not (status == "422" or path == "/ready"):
                assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
        if path.startswith(("/v1/requests", "/v2/")):
            assert operation["security"] == [{"ApiKeyAuth": []}] and "401" in responses, (method, path)
    assert schemas["ErrorBody"]["required"] == ["error"]
    assert set(spec["paths"]["/v1/ltx-2-19b-i2v"]["post"]["responses"]["200"]["content"]) == {"video/mp4"}
    # The statuses the issue found undeclared, each where the server answers it.
    v1_statuses = {"200", "400", "401", "406", "409", "413", "429", "500", "503", "504"}
    assert declared["POST", "/v1/ltx-2-19b-i2v"] >= v1_statuses
    assert declared["POST", "/v2/ltx-2-19b-i2v"] >= {"200", "400", "401", "406", "413", "429", "503"}
    assert declared["GET", "/v2/requests/{request_id}/status"] >= {"200", "401", "404", "422"}
    assert declared["DELETE", "/v2/requests/{request_id}"] >= {"200", "401", "404", "409"}
    assert "422" not in declared["POST", "/v2/ltx-2-19b-i2v"]  # validation errors are 400:
    refused = httpx.post(f"{keyed_server}/v2/ltx-2-19b-i2v", json={"prompt": "x"}, headers={"x-api-key": KEY})
    assert refused.status_code == 400 and "image" in refused.json()["error"]


def test_without_keys_the_key_is_optional_and_401_is_not_declared(scripted_server):
    spec = document(scripted_server)
    scheme = spec["components"]["securitySchemes"]["ApiKeyAuth"]
    assert scheme["type"] == "apiKey" and "authentication is off" in scheme["description"]
    for method, path, operation in operations(spec):
        assert "401" not in operation["responses"], (method, path)
        if "security" in operation:
            assert operation["security"] == [{"ApiKeyAuth": []}, {}]
    assert httpx.get(f"{scripted_server}/v2/requests/nope/status").status_code == 404


def test_allow_names_every_method_of_every_path(keyed_server):
    spec = document(keyed_server)
    with httpx.Client(base_url=keyed_server, headers={"x-api-key": KEY}, timeout=10) as client:
        for template, item in spec["paths"].items():
            path = re.sub(r"\{[^}]+\}", "x", template)
            served = ", ".join(sorted(method.upper() for method in item))
            for method in ("OPTIONS", "PUT", "PATCH"):
                if method.lower() in item:
                    continue
                answer = client.request(method, path)
                assert answer.status_code == 405, (method, path, answer.status_code)
                assert answer.headers["allow"] == served, (method, path)
                assert "error" in answer.json()
        assert client.options("/v2/requests/x").headers["allow"] == "DELETE, GET"
