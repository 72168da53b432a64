"""End-to-end tier: a real ltx2-server (uvicorn in a thread or the CLI as a subprocess) on loopback with its
real worker subprocess, driven over HTTP, by the segmind SDK, a browser or schemathesis."""

from __future__ import annotations

import pytest

from server.api.app import create_app
from server.settings import Settings
from tests.support.api import SCRIPTED_MODEL
from tests.support.servers import thread_server
from tests.support.tiers import mark_folder


def pytest_collection_modifyitems(items):
    mark_folder(items, __file__, "e2e")


@pytest.fixture(scope="module")
def scripted_server(tmp_path_factory):
    """A real uvicorn with the real worker subprocess running the scripted fixture generator."""
    results = tmp_path_factory.mktemp("results")
    app = create_app(Settings(model=SCRIPTED_MODEL, results_dir=str(results)))
    with thread_server(app) as base_url:
        yield base_url
