"""Parity report: how closely this server's LTX-2 code follows Lightricks' reference (ltx-core / ltx-pipelines)
and, for LTX-2.5, which that reference predates, diffusers' own LTX-2.5 pipeline.

Usage: python scripts/parity_report.py [-k EXPR] [--json PATH] [-- EXTRA PYTEST ARGS]

Runs the parity suite (``pytest tests/parity``) and prints, for every comparison its tests made, the measured
max-abs difference and the tolerance the test allows, then the deliberate divergences (the tests of
tests/parity/test_divergences.py, with their documented reasons). The numbers are the tests' own: each
comparison helper records what it is about to assert on (tests/parity/record.py), so this script compares
nothing itself. ``-k EXPR`` runs a subset (pytest's -k). ``--json PATH`` also writes the rows, the divergences
and pytest's exit status as JSON.

Exit status: 0 when pytest passed and every recorded difference is within its tolerance, 1 otherwise.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import subprocess
import sys
import tempfile
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.parity.record import REPORT_FILE_ENV  # noqa: E402

SUITE = "tests/parity"
DIVERGENCES = REPO / SUITE / "test_divergences.py"


# ------------------------------------------------------------------------------------------------ running
def run_suite(keyword: str | None, extra: list[str], rows_file: Path, junit_file: Path) -> tuple[int, str]:
    """pytest's exit status and its output, with ``rows_file`` receiving the recorded comparisons."""
    command = [sys.executable, "-m", "pytest", SUITE, "-q", "-p", "no:cacheprovider", f"--junitxml={junit_file}"]
    if keyword:
        command += ["-k", keyword]
    command += extra
    env = {**os.environ, REPORT_FILE_ENV: str(rows_file)}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    return done.returncode, done.stdout + done.stderr


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for row in rows:
        row["ok"] = row_ok(row)
    return rows


def row_ok(row: dict) -> bool:
    value = row["max_abs"]
    return isinstance(value, (int, float)) and math.isfinite(value) and value <= row["tolerance"]


def read_outcomes(junit_file: Path) -> dict[str, str]:
    """``module.test_name[param]`` -> passed / failed / skipped, from pytest's JUnit XML."""
    if not junit_file.exists():
        return {}
    outcomes = {}
    for case in ET.parse(junit_file).getroot().iter("testcase"):
        key = f"{case.get('classname')}.{case.get('name')}"
        if case.find("failure") is not None or case.find("error") is not None:
            outcomes[key] = "failed"
        elif case.find("skipped") is not None:
            outcomes[key] = "skipped"
        else:
            outcomes.setdefault(key, "passed")
    return outcomes


def read_divergences(path: Path = DIVERGENCES) -> list[dict]:
    """Each test of test_divergences.py: its name, a readable title and its docstring's first paragraph."""
    found = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            docstring = ast.get_docstring(node) or ""
            first_paragraph = " ".join(docstring.split("\n\n")[0].split())
            found.append({"test": node.name, "title": readable(node.name), "reason": first_paragraph})
    return found


def readable(test_name: str) -> str:
    words = test_name.removeprefix("test_").split("_")
    title = ""
    for i, word in enumerate(words):
        if word == "s" and title:  # segmind_s_default -> segmind's default
            title += "'s"
        elif word.isdigit() and i and words[i - 1].isdigit():  # 2_0 -> 2.0
            title += f".{word}"
        else:
            title += f" {word}" if title else word
    return title


# ------------------------------------------------------------------------------------------------ printing
def number(value, tolerance: bool = False) -> str:
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    if value == int(value) and abs(value) >= 1:
        return str(int(value))
    return f"{value:.0e}" if tolerance else f"{value:.2e}"


def table(rows: list[dict]) -> str:
    names = [row["component"] + (f" ({row['unit']})" if row["unit"] else "") for row in rows]
    width = max([len("component"), *map(len, names)])
    header = f"{'component':<{width}}  {'max-abs diff':>12}  {'tolerance':>9}  ok"
    lines = [header, "-" * len(header)]
    previous_file = None
    for name, row in zip(names, rows, strict=True):
        test_file = row["test"].split("::")[0]
        if previous_file is not None and test_file != previous_file:
            lines.append("")
        previous_file = test_file
        verdict = "ok" if row["ok"] else "FAIL"
        diff, tol = number(row["max_abs"]), number(row["tolerance"], tolerance=True)
        lines.append(f"{name:<{width}}  {diff:>12}  {tol:>9}  {verdict}")
    return "\n".join(lines)


def divergence_lines(divergences: list[dict], outcomes: dict[str, str]) -> str:
    module = ".".join(DIVERGENCES.relative_to(REPO).with_suffix("").parts)
    lines = []
    for item in divergences:
        status = outcomes.get(f"{module}.{item['test']}", "not run")
        lines.append(f"  [{status}] {item['title']}")
        if item["reason"]:
            lines += textwrap.wrap(item["reason"], width=110, initial_indent="      ", subsequent_indent="      ")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", dest="keyword", metavar="EXPR", help="run only the parity tests pytest -k selects")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the rows and divergences as JSON")
    parser.add_argument("pytest_args", nargs="*", help="further pytest arguments (after --)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="parity-report-") as scratch:
        rows_file, junit_file = Path(scratch) / "rows.jsonl", Path(scratch) / "junit.xml"
        returncode, output = run_suite(args.keyword, args.pytest_args, rows_file, junit_file)
        rows = read_rows(rows_file)
        outcomes = read_outcomes(junit_file)
    divergences = read_divergences()
    failed_tests = sorted(name for name, outcome in outcomes.items() if outcome == "failed")
    over = [row for row in rows if not row["ok"]]

    if returncode != 0:
        print(output.rstrip(), end="\n\n")
    references = "Lightricks' ltx-core / ltx-pipelines; for LTX-2.5, diffusers' LTX-2.5 pipeline"
    print(f"Parity with the reference ({references}): {len(rows)} comparisons\n")
    print(table(rows) if rows else "(no comparison recorded)")
    print(f"\nDeliberate divergences ({DIVERGENCES.relative_to(REPO)}):")
    print(divergence_lines(divergences, outcomes))
    summary = output.strip().splitlines()[-1] if output.strip() else f"pytest exit status {returncode}"
    print(f"\npytest: {summary.strip('= ')}")
    if failed_tests:
        print("failed tests:\n  " + "\n  ".join(failed_tests))
    if over:
        print(f"{len(over)} comparison(s) over tolerance: " + "; ".join(row["component"] for row in over))

    if args.json:
        report = {"pytest_exit_code": returncode, "rows": rows, "divergences": divergences}
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0 if returncode == 0 and not over else 1


if __name__ == "__main__":
    sys.exit(main())
