"""Records each parity comparison's measured difference, for scripts/parity_report.py.

The comparison helpers of the parity suite call ``record`` with the number they are about to assert on, so
the report shows exactly what the tests measured. Nothing is written unless the environment variable
``PARITY_REPORT_FILE`` names a file; then each call appends one JSON line to it:
``{"component", "max_abs", "tolerance", "unit", "test"}``.
"""

from __future__ import annotations

import json
import math
import os

REPORT_FILE_ENV = "PARITY_REPORT_FILE"


def current_test() -> str:
    """The running test's node id (``tests/parity/test_x.py::test_y[param]``), or "" outside a test."""
    return os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]


def record(component: str, max_abs: float, tolerance: float, unit: str = "") -> None:
    """One comparison: ``max_abs`` is the measured max-abs difference, ``tolerance`` the bound its test allows."""
    path = os.environ.get(REPORT_FILE_ENV)
    if not path:
        return
    value = float(max_abs)
    row = {
        "component": component,
        "max_abs": value if math.isfinite(value) else str(value),  # JSON has no NaN/inf
        "tolerance": float(tolerance),
        "unit": unit,
        "test": current_test(),
    }
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(row) + "\n")
