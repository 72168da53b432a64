"""scripts/parity_report.py: the parity suite's own measurements, tabulated (a fast subset: the sigma schedules)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.parity.record import REPORT_FILE_ENV, record

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "parity_report.py"


@pytest.fixture(scope="module")
def report_script():
    spec = importlib.util.spec_from_file_location("parity_report", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_report_tabulates_what_the_schedule_tests_measured(tmp_path):
    out = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "-k", "schedule", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "max-abs diff" in done.stdout and "tolerance" in done.stdout
    assert "sigma schedule: ltx2_sigmas(40)" in done.stdout
    assert "Deliberate divergences" in done.stdout
    report = json.loads(out.read_text())
    assert report["pytest_exit_code"] == 0
    components = [row["component"] for row in report["rows"]]
    assert len(components) >= 9 and all(row["ok"] for row in report["rows"])
    assert "sigma schedule: fixed list = ltx_pipelines STAGE_2_DISTILLED_SIGMA_VALUES" in components
    assert all(row["test"].startswith("tests/parity/test_schedule.py::") for row in report["rows"])
    assert report["divergences"] and all(item["title"] for item in report["divergences"])


def test_rows_over_tolerance_or_not_finite_are_failures(report_script):
    rows = [
        {"component": "a", "max_abs": 0.0, "tolerance": 0.0, "unit": "", "test": "t.py::a"},
        {"component": "b", "max_abs": 2e-5, "tolerance": 1e-5, "unit": "", "test": "t.py::b"},
        {"component": "c", "max_abs": "nan", "tolerance": 1e-5, "unit": "", "test": "t.py::c"},
        {"component": "d", "max_abs": 1, "tolerance": 1, "unit": "uint8 levels", "test": "u.py::d"},
    ]
    assert [report_script.row_ok(row) for row in rows] == [True, False, False, True]
    for row in rows:
        row["ok"] = report_script.row_ok(row)
    lines = report_script.table(rows).splitlines()
    assert lines[0].split() == ["component", "max-abs", "diff", "tolerance", "ok"]
    assert lines[3].split()[-3:] == ["2.00e-05", "1e-05", "FAIL"]
    assert lines[4].split()[-3:] == ["nan", "1e-05", "FAIL"]
    assert lines[5] == ""  # a blank line between test files
    assert lines[6].split() == ["d", "(uint8", "levels)", "1", "1", "ok"]


def test_the_recorder_writes_only_when_asked(tmp_path, monkeypatch):
    monkeypatch.delenv(REPORT_FILE_ENV, raising=False)
    record("nothing", 0.0, 1e-5)  # no file named: a no-op
    path = tmp_path / "rows.jsonl"
    monkeypatch.setenv(REPORT_FILE_ENV, str(path))
    record("video VAE decode", 3e-7, 1e-5)
    record("frames", 1, 1, unit="uint8 levels")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["component"], r["max_abs"], r["tolerance"], r["unit"]) for r in rows] == [
        ("video VAE decode", 3e-7, 1e-5, ""),
        ("frames", 1.0, 1.0, "uint8 levels"),
    ]
    assert rows[0]["test"].startswith(
        "tests/integration/test_parity_report.py::test_the_recorder_writes_only_when_asked"
    )
