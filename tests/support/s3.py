"""A real S3-compatible server (moto) on loopback with dummy credentials, as module-scoped pytest fixtures
(import them into a test module to use them)."""

from __future__ import annotations

import os

import pytest

from server.storage.results import make_s3_client

BUCKET = "ltx-results"


@pytest.fixture(scope="module")
def s3_env():
    """Dummy credentials, no config files, no proxies, no instance metadata: only loopback is reached."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
            "NO_PROXY": "127.0.0.1,localhost",
        }.items():
            patch.setenv(name, value)
        for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            patch.delenv(name, raising=False)
        yield


@pytest.fixture(scope="module")
def s3_endpoint(s3_env):
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    make_s3_client(endpoint).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()
