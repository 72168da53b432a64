from __future__ import annotations

import pytest

from tests.support.tiers import mark_folder

from . import reference  # noqa: F401  (before any ltx_core import)


def pytest_collection_modifyitems(items):
    """Parity tier: the recipes against Lightricks' reference on tiny twins (pure-CPU torch, no servers)."""
    mark_folder(items, __file__, "parity")


@pytest.fixture(scope="session")
def twins():
    """The tiny ltx-core / diffusers twins (built once per session; build_twins is cached too)."""
    from .twins import build_twins

    return build_twins(0)
