"""Talking to a running server over HTTP the way a Segmind client does: the request body, submit, poll to a
final status, wait for a condition, scrape /metrics. Used by the e2e tests and the scale-out helpers."""

from __future__ import annotations

import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.servers import png_data_uri

# The fixture generator most server tests run in the worker (a module path the worker process imports).
SCRIPTED_MODEL = "tests.support.fixture_generators:scripted"

SLUG = "ltx-2-19b-i2v"
SMALL = {"width": 256, "height": 256, "num_frames": 9, "fps": 8}


def payload(prompt: str = "a calm lake", **overrides) -> dict:
    return {"image": png_data_uri(), "prompt": prompt, **SMALL, **overrides}


def submit(base_url: str, body: dict, headers: dict | None = None) -> httpx.Response:
    return httpx.post(f"{base_url}/v2/{SLUG}", json=body, headers=headers, timeout=30)


def wait_final(status_url: str, headers: dict | None = None, timeout: float = 60) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = httpx.get(status_url, headers=headers, timeout=10)
        if response.json().get("status") in ("COMPLETED", "FAILED"):
            return response
        time.sleep(0.05)
    raise TimeoutError(status_url)


def wait_for(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError


def wait_processing(status_url: str, headers: dict | None = None) -> None:
    wait_for(lambda: httpx.get(status_url, headers=headers).json()["status"] == "PROCESSING")


def scrape(base_url: str) -> dict[str, float]:
    response = httpx.get(f"{base_url}/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f"{key}={value}" for key, value in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples
