from __future__ import annotations

import pytest

from . import reference  # noqa: F401  (before any ltx_core import)


@pytest.fixture(scope="session")
def twins():
    """The tiny ltx-core / diffusers twins (built once per session; build_twins is cached too)."""
    from .twins import build_twins

    return build_twins(0)
