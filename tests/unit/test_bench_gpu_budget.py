"""scripts/bench_gpu.py's step scaling (fewer stage-1 steps run, timed as the model's own count) and its time
budget over the whole run (what may start, what is left out, the exit status)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", REPO / "scripts" / "bench_gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_only_the_stage_whose_steps_a_run_chooses_is_scaled_to_the_model_count(bench):
    assert bench.step_scale("two-stage", {"stage1": 8, "stage2": 3}, 40) == {"stage1": 5.0}
    assert bench.step_scale("one-stage", {"denoise": 8}, 30) == {"denoise": 3.75}
    assert bench.step_scale("distilled", {"stage1": 8, "stage2": 3}, 40) == {}


def test_scaled_seconds_multiply_the_stage_and_add_the_difference_end_to_end(bench):
    stages = {"encode_prompt": 1.0, "stage1": 8.0, "stage2": 3.0, "mux": 0.5}
    scaled, end_to_end = bench.scale_seconds(stages, 20.0, {"stage1": 5.0})
    assert scaled == {"encode_prompt": 1.0, "stage1": 40.0, "stage2": 3.0, "mux": 0.5}
    assert end_to_end == pytest.approx(52.0)
    assert bench.scale_seconds(stages, 20.0, {}) == (stages, 20.0)


def test_an_item_starts_only_if_its_estimate_fits_in_what_is_left(bench):
    assert bench.over_budget(100.0, 400.0, 570.0) is None
    reason = bench.over_budget(300.0, 300.0, 570.0)
    assert reason == "time budget: 300 s used + ~300 s needed > 570 s"
    # The optional comparisons leave the generations still to build their time.
    assert bench.over_budget(100.0, 100.0, 570.0, reserve_s=200.0) is None
    assert "400 s kept for the generations still to time" in bench.over_budget(100.0, 100.0, 570.0, reserve_s=400.0)
    assert bench.over_budget(10_000.0, 10_000.0, 0.0) is None  # 0: no budget (--tiny's default)


def test_an_estimate_is_the_margin_times_the_last_similar_item(bench):
    durations = {"recipe:two-stage": 50.0, "recipe": 20.0}
    assert bench.estimate_s(durations, "recipe:two-stage", "recipe") == pytest.approx(60.0)
    assert bench.estimate_s(durations, "recipe:one-stage", "recipe") == pytest.approx(24.0)
    assert bench.estimate_s(durations, "build", default=40.0) == 40.0


def test_the_budget_counts_from_the_start_and_remembers_it_left_something_out(bench):
    now = [1000.0]
    budget = bench.Budget(570.0, started=1000.0, clock=lambda: now[0])
    budget.record("recipe:two-stage", "recipe", seconds=100.0)
    now[0] = 1400.0
    assert budget.used() == 400.0
    assert budget.refuse(budget.estimate("recipe:two-stage")) is None and not budget.cut_short
    budget.reserve_s = 100.0
    assert budget.refuse(budget.estimate("recipe:two-stage")) is None  # the main table ignores the reserve
    assert budget.refuse(budget.estimate("recipe:two-stage"), keep_reserve=True).startswith("time budget")
    assert budget.cut_short


def test_the_table_gives_scaled_times_and_says_what_ran(bench):
    row = dict(
        recipe="two-stage",
        steps="8+3",
        generated="64x64x9",
        stages={"stage1": 8.0, "stage2": 3.0},
        stages_scaled={"stage1": 40.0, "stage2": 3.0},
        end_to_end=12.0,
        end_to_end_scaled=44.0,
        steps_scaled_to={"stage1": 40},
        steps_per_stage={"stage1": 8, "stage2": 3},
    )
    skipped = dict(recipe="one-stage", steps="-", generated="-", skipped="time budget: ...", over_budget=True)
    header = "LTX-2; " + bench.scaling_note(["two-stage", "one-stage"], 8, 40)
    lines = bench.render_table(header, [row, skipped]).splitlines()
    assert lines[0] == "LTX-2; stage 1 (one-stage: every step) run at 8 steps, scaled to 40"
    cells = {line.split(" | ")[0].strip(): [c.strip() for c in line.split(" | ")[1:]] for line in lines[1:]}
    assert cells["scaled to steps"] == ["40", "-"]
    assert cells["stage1 s"] == ["40.00", "-"] and cells["stage1 s/step"] == ["1.000", "-"]
    assert cells["end-to-end s"] == ["44.00", "-"] and cells["end-to-end s, as run"] == ["12.00", "-"]
    assert cells["skipped"] == ["", "time budget: ..."]
    assert bench.scaling_note(["two-stage"], 8, 40) == "stage 1 run at 8 steps, scaled to 40"


def test_a_budget_too_small_for_any_build_skips_every_generation_and_exits_cut_short(tmp_path, bench):
    report_path = tmp_path / "bench.json"
    command = [sys.executable, "scripts/bench_gpu.py", "--tiny", "--budget-s", "1", "--json", str(report_path)]
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert completed.returncode == bench.EXIT_CUT_SHORT, completed.stderr[-3000:]
    skipped = [line for line in completed.stdout.splitlines() if ": skipped, time budget" in line]
    assert [line.split(":")[0] for line in skipped] == list(bench.FULL_SIZE)
    generations = json.loads(report_path.read_text())["generations"]
    assert [g["model"] for g in generations] == list(bench.FULL_SIZE)
    assert all(g["over_budget"] and g["skipped"].startswith("time budget") for g in generations)
