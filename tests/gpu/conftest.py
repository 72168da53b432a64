"""GPU tier: needs a CUDA GPU (each test is also skipped where torch sees none); `pytest tests/gpu` or `-m gpu`."""

from __future__ import annotations

from tests.support.tiers import mark_folder


def pytest_collection_modifyitems(items):
    mark_folder(items, __file__, "gpu")
