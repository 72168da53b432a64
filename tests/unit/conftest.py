"""Unit tier: pure in-process tests (no subprocesses, no sockets, no servers); `pytest tests/unit` runs in seconds."""

from __future__ import annotations

from tests.support.tiers import mark_folder


def pytest_collection_modifyitems(items):
    mark_folder(items, __file__, "unit")
