from __future__ import annotations

import pytest

from server.app import create_app
from server.settings import Settings
from tests.servers import thread_server

SCRIPTED_MODEL = "tests.fixture_generators:scripted"


@pytest.fixture(scope="module")
def scripted_server(tmp_path_factory):
    """A real uvicorn with the real worker subprocess running the scripted fixture generator."""
    results = tmp_path_factory.mktemp("results")
    app = create_app(Settings(model=SCRIPTED_MODEL, results_dir=str(results)))
    with thread_server(app) as base_url:
        yield base_url
