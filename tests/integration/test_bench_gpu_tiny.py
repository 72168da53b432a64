"""scripts/bench_gpu.py --tiny end to end in a real subprocess: the GPU benchmark's code path (build, place,
build_generator, every recipe through generator.generate, FLOP count, table, JSON) proven on the CPU."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from pipelines.generations import GENERATIONS

REPO = Path(__file__).resolve().parents[2]
RECIPES = ("two-stage", "distilled", "one-stage")


def test_bench_gpu_tiny_runs_every_recipe_and_prints_one_table(tmp_path):
    report_path = tmp_path / "bench.json"
    command = [
        sys.executable,
        "scripts/bench_gpu.py",
        "--tiny",
        "--models", "ltx-2-19b",
        "--width", "64",
        "--height", "64",
        "--frames", "9",
        "--no-warmup",
        "--recipes", ",".join(RECIPES),
        "--speed", "none", "--memory", "none",
        "--json", str(report_path),
    ]  # fmt: skip
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]

    table = completed.stdout
    headers = [line for line in table.splitlines() if line.startswith("metric")]
    assert len(headers) == 1 and all(recipe in headers[0] for recipe in RECIPES)
    for row in ("encode_prompt s", "stage1 s/step", "denoise s/step", "stage2 s/step", "end-to-end s", "TFLOP/s"):
        assert row in table

    report = json.loads(report_path.read_text())
    assert [row["recipe"] for row in report["recipes"]] == list(RECIPES)
    for row in report["recipes"]:
        assert "error" not in row
        assert row["end_to_end"] > 0 and row["mp4_bytes"] > 0
        assert sum(row["pflop"].values()) > 0 and row["tflops_per_s"]["all"] > 0
    two_stage, distilled, one_stage = report["recipes"]
    assert two_stage["steps_per_stage"] == {"stage1": 2, "stage2": 3}
    assert distilled["steps_per_stage"] == {"stage1": 8, "stage2": 3}
    assert one_stage["steps_per_stage"] == {"denoise": 2}
    assert {"encode_prompt", "stage1", "upsample", "stage2", "decode_audio", "decode_video", "mux"} <= set(
        two_stage["stages"]
    )


def test_bench_gpu_tiny_times_every_served_generation_in_turn_by_default(tmp_path):
    """No --models: each served generation (here its tiny model) after the last, with its own defaults, one table
    each; a recipe a generation does not offer (LTX-2.5: one-stage only) is listed as skipped, not failed."""
    report_path = tmp_path / "bench.json"
    command = [
        sys.executable, "scripts/bench_gpu.py", "--tiny",
        "--width", "64", "--height", "64", "--frames", "9", "--no-warmup", "--recipes", "one-stage", "--speed", "none",
        "--memory", "none",
        "--json", str(report_path),
    ]  # fmt: skip
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    titles = ("LTX-2 tiny", "LTX-2.3 tiny", "LTX-2.5 tiny")
    headers = [line for line in completed.stdout.splitlines() if line.startswith(titles)]
    assert [header.split(" on ")[0] for header in headers] == list(titles)
    generations = json.loads(report_path.read_text())["generations"]
    assert [g["model"] for g in generations] == [g.name for g in GENERATIONS.values() if g.is_tiny]
    assert all("error" not in row and row["mp4_bytes"] > 0 for g in generations for row in g["recipes"])
    # LTX-2.5 generates at least what its diffusion decoder takes (tiny-2.5: 96 px, 9 frames), cropped back.
    assert generations[2]["recipes"][0]["generated"] == "96x96x9"


def test_a_recipe_the_generation_does_not_offer_is_skipped_with_its_reason():
    spec = importlib.util.spec_from_file_location("bench_gpu", REPO / "scripts" / "bench_gpu.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.recipe_not_offered("ltx-2.5", "two-stage") == "not offered (one-stage only)"
    assert bench.recipe_not_offered("ltx-2.3-22b", "distilled") is None
    assert list(bench.FULL_SIZE) == [g.name for g in GENERATIONS.values() if not g.is_tiny]
    row = bench.bench_recipe(dict(model="tiny-2.5"), "distilled", None, Path("unused"), Path("unused"))
    table = bench.render_table("tiny-2.5", [row])
    assert "skipped" in row and "not offered (one-stage only)" in table.splitlines()[-1]


SPEED_VARIANTS = (
    "eager", "compile", "sdpa", "cudnn", "flash4", "sage", "decode-one-pass", "negative-cache", "lossless", "lossy",
)  # fmt: skip


def test_bench_gpu_tiny_compares_every_speed_option_with_the_eager_baseline(tmp_path):
    """Every compute-side speed option on the CPU, side by side: compiled and exact options within float rounding of
    the baseline's latents, the CUDA-only kernels reported as unavailable (naming what they need) while the run goes
    on, one table, and its JSON."""
    report_path = tmp_path / "bench.json"
    command = [
        sys.executable, "scripts/bench_gpu.py", "--tiny", "--models", "ltx-2-19b", "--width", "64", "--height", "64",
        "--frames", "9", "--recipes", "none", "--speed", "all", "--speed-recipes", "one-stage",
        "--memory", "none",
        "--json", str(report_path),
    ]  # fmt: skip
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.count("speed options, one-stage") == 1
    for column in ("first run s", "end-to-end s", "speed-up", "TFLOP/s", "of floor", "max|dlatent|"):
        assert column in completed.stdout

    speed = json.loads(report_path.read_text())["speed_options"]
    rows = {row["variant"]: row for row in speed["recipes"]["one-stage"]}
    assert list(rows) == list(SPEED_VARIANTS)
    for name in ("cudnn", "flash4", "sage", "lossy"):
        assert "needs" in rows[name]["unavailable"]
    assert "pip install flash-attn-4" in rows["flash4"]["unavailable"]
    ran = [rows[name] for name in SPEED_VARIANTS if name not in ("cudnn", "flash4", "sage", "lossy")]
    for row in ran:
        assert "error" not in row and row["mp4_bytes"] > 0
        assert row["end_to_end_scaled"] > 0 and row["tflops_per_s"] > 0 and 0 < row["fraction_of_floor"]
        assert row["first_run_seconds"] > 0 and row["steps_run"] == {"denoise": 2}
    # Exact options: bit-identical latents; compiled ones within float rounding.
    for name in ("sdpa", "decode-one-pass", "negative-cache"):
        assert rows[name]["latent_max_abs_diff"] == 0.0
    for name in ("compile", "lossless"):
        assert rows[name]["latent_max_abs_diff"] < 1e-4
    assert "compile regional" in rows["lossless"]["options"] and "one pass" in rows["lossless"]["options"]


MEMORY_VARIANTS = (
    "adapter", "offload-text-encoder", "offload-model", "merged", "merged-fp8", "fp8-storage", "fp8-compute",
)  # fmt: skip


def test_bench_gpu_tiny_compares_every_memory_option_with_the_adapter_baseline(tmp_path):
    """Every memory/precision option on the CPU, in its order, for two-stage and distilled: offloading and the
    merged LoRA within float rounding of the baseline's latents, fp8 measurably different, one table per recipe
    with the weights' size and what the planner asks of the GPU, and the JSON."""
    report_path = tmp_path / "bench.json"
    command = [
        sys.executable, "scripts/bench_gpu.py", "--tiny", "--models", "ltx-2-19b", "--width", "64", "--height", "64",
        "--frames", "9", "--recipes", "none", "--speed", "none", "--memory", "all",
        "--memory-recipes", "two-stage,distilled", "--json", str(report_path),
    ]  # fmt: skip
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    for recipe in ("two-stage", "distilled"):
        assert completed.stdout.count(f"memory and precision options, {recipe}") == 1
    for column in ("weights GiB", "none needs GiB", "stage2 s", "speed-up", "peak RSS GiB", "max|dlatent|"):
        assert column in completed.stdout

    memory = json.loads(report_path.read_text())["memory_options"]
    for recipe in ("two-stage", "distilled"):
        rows = {row["variant"]: row for row in memory["recipes"][recipe]}
        assert list(rows) == list(MEMORY_VARIANTS)
        for row in rows.values():
            assert "error" not in row and row["mp4_bytes"] > 0 and row["peak_gib"] > 0
            assert row["resident_needs_gib"] > row["weights_gib"] > 0
        for lossless in ("offload-text-encoder", "offload-model"):
            assert rows[lossless]["latent_max_abs_diff"] == 0
        assert rows["merged"]["latent_max_abs_diff"] < 1e-5
        for lossy in ("merged-fp8", "fp8-storage", "fp8-compute"):
            assert 0 < rows[lossy]["latent_max_abs_diff"] < 0.5
        # fp8 halves what the transformers weigh (the tiny model's embeddings and projections stay as they are).
        assert rows["fp8-storage"]["weights_gib"] < rows["merged"]["weights_gib"]
