"""The tier of a test is its folder: each tier's conftest.py marks what was collected under it."""

from __future__ import annotations

from pathlib import Path

import pytest


def mark_folder(items: list[pytest.Item], conftest_file: str, marker: str) -> None:
    """Add ``pytest.mark.<marker>`` to every collected item that lives under the folder of ``conftest_file``.

    pytest calls every conftest's pytest_collection_modifyitems with the whole session's items, so each
    tier keeps to its own folder."""
    folder = Path(conftest_file).resolve().parent
    mark = getattr(pytest.mark, marker)
    for item in items:
        if folder in Path(item.path).resolve().parents:
            item.add_marker(mark)
