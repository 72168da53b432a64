"""Integration tier: real subprocesses (the CLI's generate, ffmpeg, scripts), real redis-server, real S3 (moto)
and the real model code on the CPU, but no ltx2-server listening for requests."""

from __future__ import annotations

from tests.support.tiers import mark_folder


def pytest_collection_modifyitems(items):
    mark_folder(items, __file__, "integration")
