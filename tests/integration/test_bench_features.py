"""scripts/bench_features.py in a real subprocess on the tiny model: every variant runs and is reported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_features_times_every_variant_against_the_baseline(tmp_path):
    report = tmp_path / "features.json"
    command = [
        sys.executable, "scripts/bench_features.py", "--rounds", "1", "--width", "128", "--height", "128",
        "--frames", "9", "--json", str(report),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    figures = json.loads(report.read_text())
    names = ["image-to-video (baseline)", "text-to-video", "+1 keyframe", "+2 keyframes", "+1 LoRA", "+enhance_prompt"]
    assert list(figures["cpu_seconds"]) == names and list(figures["wall_seconds"]) == names
    assert all(seconds > 0 for seconds in figures["wall_seconds"].values())
    assert 0 < figures["word_list_seconds"] < 0.01
    for name in names:
        assert name in result.stdout
