"""Property-based fuzz of the HTTP API: whatever a client sends to any route of the server's own
OpenAPI document (and to routes it does not have), the answer is never a 5xx, every error is
``{"error": ...}``, and the server keeps serving; on the in-memory store and on a Redis store."""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.api.app import create_app
from server.api.params import I2VParams
from server.settings import Settings
from tests.support.redis_server import require_redis_server
from tests.support.scale_out import Cluster
from tests.support.servers import png_data_uri, thread_server

FAST_MODEL = "tests.support.fixture_generators:fast"
PARAM_NAMES = list(I2VParams.model_fields)
JOB_BODY_KEYS = {"status", "request_id", "metrics"}

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(["", "-1", "256", "1e309", "data:image/png;base64,", "data:,x", "http://", png_data_uri(8, 8)]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
# The nested fields (keyframes, loras) drawn close to valid, so their inner checks are reached.
keyframe_objects = st.fixed_dictionaries(
    {"image": st.sampled_from([png_data_uri(8, 8), "data:,x", "http://", "", "x" * 30]) | json_scalars},
    optional={"frame": json_scalars, "strength": json_scalars, "extra": json_values},
)
lora_objects = st.fixed_dictionaries(
    {"name": st.sampled_from(["", "nope", "../x", "a" * 200]) | json_scalars},
    optional={"scale": json_scalars, "extra": json_values},
)
bodies = st.one_of(
    st.dictionaries(st.sampled_from(PARAM_NAMES + ["extra", "model"]), json_values, max_size=len(PARAM_NAMES) + 1),
    st.fixed_dictionaries(
        {"image": st.just(png_data_uri(8, 8)), "prompt": st.just("p"), "num_frames": st.integers(1, 12)},
        optional={
            "keyframes": st.lists(keyframe_objects, max_size=10) | json_values,
            "loras": st.lists(lora_objects, max_size=6) | json_values,
            "enhance_prompt": json_values,
        },
    ),
    st.fixed_dictionaries(
        {"image": st.just(png_data_uri(8, 8)), "prompt": st.text(min_size=1, max_size=30)},
        optional={name: json_values for name in PARAM_NAMES if name not in ("image", "prompt")},
    ),
    json_values,
)
raw_bodies = st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode))
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30).map(str.strip)
content_types = st.sampled_from(["application/json", "text/plain", "", "multipart/form-data"])
path_segments = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="/?#%"), min_size=1, max_size=40
)


@contextmanager
def api_on(store: str, root: Path):
    """The API on the in-memory store with its worker, or an API replica of a Redis store with a
    worker host running the same fast generator."""
    if store == "memory":
        with thread_server(create_app(Settings(model=FAST_MODEL, results_dir=str(root), max_queue=1000))) as url:
            yield url
        return
    require_redis_server()
    with Cluster(root, model=FAST_MODEL) as cluster:
        cluster.start_worker()
        settings = Settings(store=cluster.redis.url, results_dir=str(cluster.results), max_queue=1000)
        with thread_server(create_app(settings)) as url:
            yield url


@pytest.fixture(scope="module", params=["memory", "redis"])
def fuzz_target(request, tmp_path_factory):
    with api_on(request.param, tmp_path_factory.mktemp("r")) as base_url:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            spec = client.get("/openapi.json").json()
            yield client, spec
            assert client.get("/health").status_code == 200


def operations(spec: dict) -> list[tuple[str, str]]:
    found = [(method.upper(), path) for path, item in spec["paths"].items() for method in item]
    return found + [("POST", "/v2/{model}"), ("GET", "/{anything}"), ("PUT", "/v2/requests/{request_id}")]


def check_answer(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body.get("error"), str) or (response.status_code == 422 and JOB_BODY_KEYS <= set(body))


def send_fuzzed_request(client: httpx.Client, spec: dict, data) -> httpx.Response:
    """One request drawn by hypothesis: any operation of the spec (or none), any path values, key and body."""
    method, template = data.draw(st.sampled_from(operations(spec)))
    path = re.sub(r"\{[^}]+\}", lambda _: data.draw(path_segments), template)
    headers = {}
    if data.draw(st.booleans()):
        headers["x-api-key"] = data.draw(header_text)
    if method not in ("POST", "PUT"):
        return client.request(method, path, headers=headers)
    if data.draw(st.booleans()):
        content = json.dumps(data.draw(bodies)).encode()
        headers["content-type"] = "application/json"
    else:
        content = data.draw(raw_bodies)
        headers["content-type"] = data.draw(content_types)
    return client.request(method, path, content=content, headers=headers)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_no_input_gets_a_5xx(fuzz_target, data):
    client, spec = fuzz_target
    check_answer(send_fuzzed_request(client, spec, data))
