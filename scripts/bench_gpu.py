"""GPU benchmark: the server's own generation path on each full-size LTX-2 generation, with random weights.

Builds each generation asked for (``--models``, by default every generation the server serves: LTX-2 19B,
pipelines/ltx2_19b.py; LTX-2.3 22B, pipelines/ltx23_22b.py; LTX-2.5, pipelines/ltx25_full.py) with random
weights directly on the GPU (no download), one after the other (each is freed before the next is built),
places it with the server's offload planner, turns it into the server's generator for each recipe it offers
(pipelines.build_generator, as `ltx2-server serve --model ...` does; a recipe the generation does not offer,
such as two-stage for LTX-2.5, is listed as skipped) and times ``generator.generate(params, image, output,
on_progress)`` on the API's default payload (720x1280, 181 frames, 24 fps, guidance 4, the default negative
prompt), after one small warm-up run per recipe.

It prints one table per generation: seconds per stage and per denoising step, peak VRAM, and achieved
TFLOP/s from an analytic count of the transformer's forward passes (pipelines.ltx2_19b.transformer_forward_flops,
which follows each generation's config; model FLOPs: the distilled LoRA's extra matmuls in stage 2, and
LTX-2.3's attention gates and prompt AdaLN, under 0.1 %, are not counted; LTX-2.5's diffusion decoder is
timed in decode_video, its FLOPs not counted). Each generation runs its own defaults (pipelines/generations.py:
40 steps for 2.0, 30 for 2.3 and 2.5, and its guidance).

    python scripts/bench_gpu.py [--models ltx-2-19b,ltx-2.3-22b,ltx-2.5]
                                [--recipes two-stage,distilled,one-stage]
                                [--steps N] [--one-stage-steps N] [--budget-s 570] [--json OUT]
    python scripts/bench_gpu.py --tiny          # the same code path on the CPU with the tiny models

On a GPU, the main table runs QUICK_STEPS (8) steps of two-stage's stage 1 and of one-stage and scales their time
to the model's own count (40 or 30), with the speed comparison's scaling (step_scale, scale_seconds); the header
says so ("stage 1 run at 8 steps, scaled to 40"), and the table gives both the scaled and the as-run end-to-end
time. Distilled runs its fixed steps. An explicit ``--steps N`` (or ``--one-stage-steps N``) runs N steps, unscaled,
as before; --tiny runs the tiny model's own steps.

Time (not yet measured on a GPU): building the random 19B should take ~30 s (its Python-side work, measured on a
2-core CPU on the meta device, is ~2 s of module construction and ~8 s of peft wrapping of the 1,344 LoRA'd
linears; the weight initialisation itself runs on the GPU). At about 520 TFLOP/s (an H100-class GPU) the three
recipes at 8 steps take ~15 + 10 + 30 s plus decode, mux and warm-ups: about 1.5 minutes a generation, build
included, ~4 minutes for the three; the speed and memory comparisons on the first generation take the rest of
the 10 minutes. --budget-s (570 s) covers the whole run from its start: no generation build, recipe or variant
starts when the time used plus its estimate (1.2x the last similar item; a first build: BUILD_ESTIMATE_S) would
pass it, and the speed and memory variants also leave the generations still to build their time (1.2x the
first generation's build and table each). What is left out is listed as skipped, with the reason, in the
tables and the JSON, and the exit status is 3 (1 when something failed). A run stopped with SIGTERM still prints
the table of the recipes that finished, and --json is written after each.

Speed options (pipelines/speed.py), then, side by side per --speed-recipes recipe (default two-stage): the
"eager" baseline (no compile, torch's SDPA, 48-frame decode chunks, negative prompt encoded every request), each
option alone (compile, sdpa, cudnn, flash4, sage, decode-one-pass, negative-cache) and the options together
("lossless": compile, the fastest exact attention available, one-pass decode, negative prompt cache; "lossy":
the same with SageAttention). Each variant runs --speed-steps (4) guided steps, scaled to the model's count,
a first run then a timed one; the table gives seconds per stage, the speed-up over eager, TFLOP/s, the fraction
of the floor (the transformer's FLOPs at --floor-tflops 800 over the end-to-end time), peak VRAM and how far
the final latents are from eager's. An option this machine cannot run is listed as unavailable; one that fails
is reported and the next one runs; none starts that would pass --budget-s.

    python scripts/bench_gpu.py --recipes none --speed all --speed-recipes two-stage,distilled

Memory and precision options (pipelines/fp8.py, stage2.py, offload.py), last, as they change the loaded model
for good: per --memory-recipes recipe (default two-stage), the "adapter" baseline (bf16, the distilled LoRA as a
peft adapter), text-encoder and model offload (pinned host copies; undone after their row), then, each on top of
the last, the LoRA merged into a second transformer, that copy in fp8, the base in fp8 storage too, and both
with fp8 matmuls. Each row: the weights' size, what is on the GPU, what the offload planner asks for with
everything resident, seconds per stage (--speed-steps, scaled), peak VRAM and the final latents' distance from
the baseline. --memory none leaves them out.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import resource
import signal
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_PAYLOAD = dict(width=720, height=1280, num_frames=181, fps=24, guidance_scale=4.0)
WARMUP_PAYLOAD = dict(width=256, height=256, num_frames=9, fps=24, guidance_scale=4.0)
TINY_PAYLOAD = dict(width=256, height=256, num_frames=25, fps=24, guidance_scale=4.0)
TINY_WARMUP_PAYLOAD = dict(width=64, height=64, num_frames=9, fps=24, guidance_scale=4.0)
PROMPT = (
    "A woman in a red coat walks toward the camera along a snowy street at dusk, shop windows glowing, "
    "soft snowfall, she smiles and waves; ambient city sound and footsteps on snow"
)
STAGE_ORDER = (
    "load_image",
    "encode_prompt",
    "stage1",
    "denoise",
    "upsample",
    "stage2",
    "decode_audio",
    "decode_video",
    "mux",
)
GIB = 1024**3
# Stage-1 (one-stage: all) steps the main table runs on a GPU by default, its time scaled to the model's count.
QUICK_STEPS = 8
# Served generation -> (its tiny model, the module whose build_random_* builds it at full size, that function).
FULL_SIZE = {
    "ltx-2-19b": ("tiny", "pipelines.ltx2_19b", "build_random_19b_bundle"),
    "ltx-2.3-22b": ("tiny-2.3", "pipelines.ltx23_22b", "build_random_22b_bundle"),
    "ltx-2.5": ("tiny-2.5", "pipelines.ltx25_full", "build_random_ltx25_bundle"),
}


def default_negative_prompt() -> str:
    """The API's default, read from server/api/params.py without importing it (that needs pydantic, which the
    GPU machine lacks, and scripts should not pull the API process's imports into a benchmark)."""
    tree = ast.parse((REPO / "server" / "api" / "params.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            getattr(t, "id", None) == "DEFAULT_NEGATIVE_PROMPT" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise RuntimeError("server/api/params.py no longer defines DEFAULT_NEGATIVE_PROMPT")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="the tiny models on the CPU, small payload")
    parser.add_argument(
        "--models",
        default=",".join(FULL_SIZE),
        help=f"comma-separated generations to build and time, in turn (default: all, {','.join(FULL_SIZE)}); "
        "with --tiny, the tiny model of each",
    )
    parser.add_argument("--recipes", default="two-stage,distilled,one-stage")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help=f"stage-1 steps of two-stage, run as given, unscaled (default on a GPU: {QUICK_STEPS}, the time "
        "scaled to the model's own count; --tiny: the model's)",
    )
    parser.add_argument("--one-stage-steps", type=int, default=None, help="one-stage steps (default: as --steps)")
    parser.add_argument("--offload", default="none", help="none|model|group|sequential|auto (default none)")
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--fps", type=int, default=None)
    parser.add_argument("--no-warmup", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here (after each recipe)")
    add_speed_arguments(parser)
    add_memory_arguments(parser)
    args = parser.parse_args(argv)
    base = TINY_PAYLOAD if args.tiny else DEFAULT_PAYLOAD
    args.payload = dict(
        base,
        width=args.width or base["width"],
        height=args.height or base["height"],
        num_frames=args.frames or base["num_frames"],
        fps=args.fps or base["fps"],
    )
    args.warmup_payload = None if args.no_warmup else (TINY_WARMUP_PAYLOAD if args.tiny else WARMUP_PAYLOAD)
    args.recipe_list = [name.strip() for name in args.recipes.split(",") if name.strip() and name.strip() != "none"]
    args.model_list = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in args.model_list if name not in FULL_SIZE]
    if unknown:
        parser.error(f"--models: unknown {', '.join(unknown)} (known: {', '.join(FULL_SIZE)})")
    resolve_quick_steps(args)
    resolve_speed_arguments(parser, args)
    resolve_memory_arguments(parser, args)
    return args


def resolve_quick_steps(args: argparse.Namespace) -> None:
    """On a GPU, unless --steps (or --one-stage-steps) says otherwise, two-stage's stage 1 and one-stage run
    QUICK_STEPS steps and their times are scaled to the model's own count: the whole run fits in 10 minutes."""
    args.scaled_recipes = set()
    if args.tiny or args.steps is not None:
        return
    args.steps = QUICK_STEPS
    args.scaled_recipes.add("two-stage")
    if args.one_stage_steps is None:
        args.scaled_recipes.add("one-stage")


def build(args, generation: str = "ltx-2-19b") -> dict:
    """The placed bundle of ``generation`` (its tiny model with --tiny) and what it took to get there."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before diffusers/huggingface_hub are imported
    start = time.perf_counter()
    import torch

    from pipelines.loader import build_tiny_bundle

    torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
    timings: dict[str, float] = {"imports": time.perf_counter() - start}
    tiny, module, builder = FULL_SIZE[generation]
    if args.tiny:
        device, dtype, model = torch.device("cpu"), torch.float32, tiny
        begin = time.perf_counter()
        bundle = build_tiny_bundle(tiny)
        timings["build"] = time.perf_counter() - begin
        device_name = "CPU (tiny model)"
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run with --tiny on a CPU")
        import importlib

        device, dtype, model = torch.device("cuda"), torch.bfloat16, generation
        bundle = getattr(importlib.import_module(module), builder)(device, dtype, timings=timings)
        device_name = torch.cuda.get_device_name(device)
    begin = time.perf_counter()
    plan = place(bundle, args.offload, device)
    timings["place"] = time.perf_counter() - begin
    timings["total"] = time.perf_counter() - start
    return dict(
        bundle=bundle, plan=plan, device=device, dtype=dtype, model=model, device_name=device_name, timings=timings
    )


def place(bundle, offload: str, device):
    """The server's placement. Its planner budgets the default request's activations (~10 GiB), which the 19B's
    ~71 GiB of resident weights (LoRA included) leave just short of on an 80 GB card: then, for
    ``--offload none`` with everything already on the GPU, measure the real peak instead of refusing."""
    from pipelines.loader import place_bundle
    from pipelines.offload import InsufficientGpuMemory, OffloadPlan

    try:
        return place_bundle(bundle, offload, device)
    except InsufficientGpuMemory as error:
        if offload != "none" or device.type != "cuda":
            raise
        print(f"warning: the offload planner refuses --offload none ({error}); going on", file=sys.stderr)
        return OffloadPlan(
            "none", vae_tiling=False, reason=f"forced by bench_gpu.py although the planner said: {error}"
        )


def stage_flops(generator, size, payload: dict, config: dict) -> dict[str, tuple[float, int]]:
    """Per denoising stage: (transformer FLOPs, steps), from the generated size and the recipe."""
    from pipelines.ltx2_19b import audio_tokens, transformer_forward_flops, video_tokens

    spec = generator.spec
    text = generator.max_sequence_length
    audio = audio_tokens(size.num_frames, payload["fps"], config)
    policy = generator.policy.for_request(payload["guidance_scale"], guided=spec.uses_guidance)
    # Guided steps run one batch-1 pass per guidance term (prompt, negative prompt, STG, isolated modalities).
    passes = policy.passes_per_step(config["num_layers"])

    def forward(width: int, height: int, batch: int) -> float:
        video = video_tokens(width, height, size.num_frames, config)
        return transformer_forward_flops(config, video, audio, text, batch=batch)

    if not spec.two_stage:
        return {"denoise": (spec.final_steps * forward(size.width, size.height, passes), spec.final_steps)}
    # Stage 1 at half size (guided unless distilled); stage 2 with fixed sigmas, never guided.
    return {
        "stage1": (spec.stage1_steps * forward(size.width // 2, size.height // 2, passes), spec.stage1_steps),
        "stage2": (spec.final_steps * forward(size.width, size.height, 1), spec.final_steps),
    }


def run_once(generator, payload: dict, image_path: Path, output_path: Path, device) -> dict:
    import torch

    from pipelines.interface import JobSpec

    params = JobSpec(prompt=PROMPT, negative_prompt=default_negative_prompt(), seed=42, **payload)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    result = generator.generate(params, image_path, output_path, lambda stage, step, total: None)
    seconds = time.perf_counter() - start
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / GIB
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB  # a CPU run's nearest figure
    return dict(
        end_to_end=seconds,
        stages=dict(result.stage_seconds),
        peak_gib=peak,
        on_cuda=device.type == "cuda",
        mp4_bytes=output_path.stat().st_size,
    )


def recipe_not_offered(model: str, recipe: str) -> str | None:
    """Why ``model`` does not run ``recipe`` (LTX-2.5 runs one-stage only), or None when it does."""
    from pipelines.generations import generation as generation_row

    served = generation_row(model)
    if recipe in served.recipes:
        return None
    return f"not offered ({', '.join(served.recipes)} only)"


def generated_size(generator, payload: dict):
    """The size ``generator`` generates for ``payload``: the next valid size up, raised to a generation's own
    floor (LTX-2.5's diffusion decoder: 17 frames, 224 px)."""
    from pipelines.interface import JobSpec

    return generator._plan_size(JobSpec(prompt=PROMPT, negative_prompt="", seed=0, **payload))


def bench_recipe(built: dict, recipe: str, args, image_path: Path, tmp: Path) -> dict:
    import pipelines
    from pipelines.generations import generation as generation_row

    skipped = recipe_not_offered(built["model"], recipe)
    if skipped:
        return dict(recipe=recipe, steps="-", generated="-", skipped=skipped)
    steps = (args.one_stage_steps or args.steps) if recipe == "one-stage" else args.steps
    generator = pipelines.build_generator(
        built["bundle"], built["model"], built["plan"], recipe=recipe, num_inference_steps=steps
    )
    pipe = generator.pipe
    payload = args.payload
    size = generated_size(generator, payload)
    row = dict(
        recipe=recipe,
        steps=f"{generator.spec.stage1_steps}+{generator.spec.final_steps}"
        if generator.spec.two_stage
        else str(generator.spec.final_steps),
        generated=f"{size.width}x{size.height}x{size.num_frames}",
    )
    try:
        if args.warmup_payload:
            warm = run_once(generator, args.warmup_payload, image_path, tmp / f"warmup-{recipe}.mp4", built["device"])
            row["warmup_seconds"] = warm["end_to_end"]
        row.update(run_once(generator, payload, image_path, tmp / f"{recipe}.mp4", built["device"]))
    except Exception as error:  # an OOM or a failure in one recipe must not hide the others' numbers
        row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:200]
        return row
    config = dict(pipe.transformer.config)
    flops = stage_flops(generator, size, payload, config)
    row["pflop"] = {stage: total / 1e15 for stage, (total, _) in flops.items()}
    row["steps_per_stage"] = {stage: count for stage, (_, count) in flops.items()}
    row["tflops_per_s"] = {
        stage: total / 1e12 / row["stages"][stage] for stage, (total, _) in flops.items() if row["stages"].get(stage)
    }
    denoise_seconds = sum(row["stages"].get(stage, 0.0) for stage in flops)
    row["tflops_per_s"]["all"] = sum(total for total, _ in flops.values()) / 1e12 / denoise_seconds
    if recipe in args.scaled_recipes:
        model_steps = generation_row(built["model"]).num_inference_steps
        scale = step_scale(recipe, row["steps_per_stage"], model_steps)
        row["steps_scaled_to"] = {stage: model_steps for stage in scale}
        row["stages_scaled"], row["end_to_end_scaled"] = scale_seconds(row["stages"], row["end_to_end"], scale)
    return row


# -- compute-side speed options (pipelines/speed.py), side by side ---------------------------------------------
# Each variant is a pipelines.speed.SpeedOptions applied to the one loaded model (and undone after): the same
# payload, fewer stage-1 steps (--speed-steps) scaled up to the model's own count, a first run (compiles, fills
# the negative prompt cache, warms kernels) then a timed run. "eager" is the baseline: what the server ran before
# these options (no compile, torch's SDPA, 48-frame decode chunks, the negative prompt encoded every request).
SPEED_VARIANTS = {
    "eager": dict(cache_negative_prompt=False),
    "compile": dict(cache_negative_prompt=False, compile="regional"),
    "sdpa": dict(cache_negative_prompt=False, attention="sdpa"),
    "cudnn": dict(cache_negative_prompt=False, attention="cudnn"),
    "flash4": dict(cache_negative_prompt=False, attention="flash4"),
    "sage": dict(cache_negative_prompt=False, attention="sage"),
    "decode-one-pass": dict(cache_negative_prompt=False, decode_chunk_frames=0),
    "negative-cache": dict(cache_negative_prompt=True),
    "lossless": dict(compile="regional", attention="exact-fastest", decode_chunk_frames=0),
    "lossy": dict(compile="regional", attention="sage", decode_chunk_frames=0),
}
SCALED_STAGE = {"two-stage": "stage1", "one-stage": "denoise"}  # the stage whose steps a run may choose
SPEED_ROW_STAGES = ("encode_prompt", "stage1", "denoise", "upsample", "stage2", "decode_video", "mux")
# The floor the issue measures against: every transformer FLOP at this rate (bf16 dense, H100/H200 class).
FLOOR_TFLOPS = 800.0
GPU_BUDGET_S = 570.0  # the whole run, build included, within 10 minutes on one GPU
BUDGET_MARGIN = 1.2  # an item is estimated at this times the last similar one
# A generation's first build, before any has been timed (not yet measured on a GPU).
BUILD_ESTIMATE_S = {"ltx-2-19b": 40.0, "ltx-2.3-22b": 50.0, "ltx-2.5": 50.0}
EXIT_CUT_SHORT = 3  # nothing failed, but --budget-s left something out


def step_scale(recipe: str, steps_run: dict[str, int], model_steps: int) -> dict[str, float]:
    """Per denoising stage, the factor from the steps it ran to the model's own count: only the guided stage whose
    steps a run chooses (two-stage's stage 1, one-stage's only one); stage 2 and distilled's steps are fixed."""
    stage = SCALED_STAGE.get(recipe)
    if stage is None or not steps_run.get(stage):
        return {}
    return {stage: model_steps / steps_run[stage]}


def scale_seconds(
    stages: dict[str, float], end_to_end: float, scale: dict[str, float]
) -> tuple[dict[str, float], float]:
    """Seconds per stage with each scaled stage's time times its factor (a denoising step takes the same time
    whatever the count), and the end-to-end time with the same seconds added."""
    scaled = {stage: seconds * scale.get(stage, 1.0) for stage, seconds in stages.items()}
    return scaled, end_to_end + sum(scaled[stage] - stages[stage] for stage in stages)


def over_budget(used_s: float, estimate_s: float, budget_s: float, reserve_s: float = 0.0) -> str | None:
    """Why an item estimated at ``estimate_s`` must not start once ``used_s`` of ``budget_s`` seconds are gone,
    ``reserve_s`` being kept for later work; None when it may (a budget of 0 is no budget)."""
    if not budget_s or used_s + estimate_s + reserve_s <= budget_s:
        return None
    kept = f" + {reserve_s:.0f} s kept for the generations still to time" if reserve_s else ""
    return f"time budget: {used_s:.0f} s used + ~{estimate_s:.0f} s needed{kept} > {budget_s:.0f} s"


def estimate_s(durations: dict[str, float], *keys: str, default: float = 0.0) -> float:
    """BUDGET_MARGIN times the first of ``keys`` already timed (the last similar item), else ``default``."""
    for key in keys:
        if key in durations:
            return BUDGET_MARGIN * durations[key]
    return default


class Budget:
    """--budget-s over the whole run, from the start of main(): what each kind of item last took, the time kept
    for the generations still to build, and whether anything was left out."""

    def __init__(self, limit_s: float, started: float, clock=time.monotonic) -> None:
        self.limit_s, self.started, self.clock = limit_s, started, clock
        self.durations: dict[str, float] = {}
        self.reserve_s = 0.0
        self.cut_short = False

    def used(self) -> float:
        return self.clock() - self.started

    def estimate(self, *keys: str, default: float = 0.0) -> float:
        return estimate_s(self.durations, *keys, default=default)

    def record(self, *keys: str, seconds: float) -> None:
        for key in keys:
            self.durations[key] = seconds

    def refuse(self, estimate: float, keep_reserve: bool = False) -> str | None:
        """The reason an item of ``estimate`` seconds must not start, or None; the optional comparisons
        (``keep_reserve``) also leave the generations still to build their time."""
        reason = over_budget(self.used(), estimate, self.limit_s, self.reserve_s if keep_reserve else 0.0)
        self.cut_short = self.cut_short or reason is not None
        return reason


def add_speed_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--speed",
        default="all",
        help=f"speed variants to compare (comma-separated of {', '.join(SPEED_VARIANTS)}; all; none)",
    )
    parser.add_argument("--speed-recipes", default=None, help="recipes of the comparison (two-stage; --tiny one-stage)")
    parser.add_argument("--speed-models", default=None, help="generations compared (default: the first of --models)")
    parser.add_argument(
        "--speed-steps", type=int, default=None, help="stage-1 (one-stage: all) steps each variant runs (4; --tiny 2)"
    )
    parser.add_argument("--floor-tflops", type=float, default=FLOOR_TFLOPS, help="rate of the floor (TFLOP/s)")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="start no generation build, recipe or variant that would end past this many seconds of the whole run "
        f"({GPU_BUDGET_S:.0f}; --tiny none); what is left out is listed as skipped and the exit status is "
        f"{EXIT_CUT_SHORT}",
    )


def resolve_speed_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    names = [name.strip() for name in args.speed.split(",") if name.strip()]
    if names == ["all"]:
        names = list(SPEED_VARIANTS)
    elif names == ["none"]:
        names = []
    unknown = [name for name in names if name not in SPEED_VARIANTS]
    if unknown:
        parser.error(f"--speed: unknown {', '.join(unknown)} (known: {', '.join(SPEED_VARIANTS)})")
    if names and names[0] != "eager":  # every variant is compared with the baseline
        names = ["eager", *[name for name in names if name != "eager"]]
    args.speed_list = names
    models = args.speed_models or args.model_list[0]
    args.speed_model_list = [name.strip() for name in models.split(",") if name.strip()]
    recipes = args.speed_recipes or ("one-stage" if args.tiny else "two-stage")
    args.speed_recipe_list = [name.strip() for name in recipes.split(",") if name.strip()]
    args.speed_steps = args.speed_steps or (2 if args.tiny else 4)
    args.budget_s = args.budget_s if args.budget_s is not None else (0.0 if args.tiny else GPU_BUDGET_S)


def speed_options_for(variant: str, device):
    """The variant's SpeedOptions; "exact-fastest" is the fastest exact attention this machine has, unmeasured:
    FlashAttention 4 where it can run, else cuDNN's, else torch's SDPA (the CPU)."""
    from pipelines.speed import SpeedOptions, SpeedOptionUnavailable, check_speed_options

    values = dict(SPEED_VARIANTS[variant])
    if values.get("attention") == "exact-fastest":
        for attention in ("flash4", "cudnn", "sdpa"):
            try:
                check_speed_options(SpeedOptions(attention=attention), device)
            except SpeedOptionUnavailable:
                continue
            values["attention"] = attention
            break
    return SpeedOptions(**values)


def bench_speed_options(built: dict, args, image_path: Path, tmp: Path, report: dict, reports: list[dict]) -> bool:
    """Every --speed variant for every --speed-recipes recipe; prints one table per recipe. True if one failed
    (an option this machine cannot run is reported as unavailable, not as a failure)."""
    generation = next(name for name, (tiny, *_) in FULL_SIZE.items() if built["model"] in (name, tiny))
    if not args.speed_list or generation not in args.speed_model_list:
        return False
    runs: dict[str, list[dict]] = {}
    report["speed_options"] = dict(
        steps=args.speed_steps, floor_tflops=args.floor_tflops, budget_s=args.budget_s, recipes=runs
    )
    from pipelines.generations import generation as generation_row

    failed = False
    for recipe in args.speed_recipe_list:
        if recipe not in generation_row(built["model"]).recipes:
            print(f"speed options: {built['model']} has no {recipe} recipe; skipped", file=sys.stderr, flush=True)
            continue
        rows = runs.setdefault(recipe, [])
        latents: dict[str, object] = {}  # variant -> its final video latents (CPU, float32)
        try:
            for variant in args.speed_list:
                rows.append(bench_speed_variant(built, recipe, variant, args, image_path, tmp, latents))
                print(f"{recipe} / {variant}: {_speed_outcome(rows[-1])}", file=sys.stderr, flush=True)
                if args.json:
                    _write_json(args.json, reports)
        finally:
            print(render_speed_table(built, recipe, args, rows), flush=True)
        failed = failed or any("error" in row for row in rows)
    return failed


def _speed_outcome(row: dict) -> str:
    for key in ("error", "unavailable", "skipped"):
        if key in row:
            return f"{key}: {row[key]}"
    return f"{row['end_to_end_scaled']:.2f} s end to end (scaled)"


def bench_speed_variant(
    built: dict, recipe: str, variant: str, args, image_path: Path, tmp: Path, latents: dict
) -> dict:
    import pipelines
    from pipelines.speed import SpeedOptionUnavailable, apply_speed_options

    row: dict = dict(variant=variant)
    try:
        options = speed_options_for(variant, built["device"])
    except SpeedOptionUnavailable as error:
        return dict(row, unavailable=str(error))
    row["options"] = options.summary()
    budget = args.budget
    refusal = budget.refuse(budget.estimate(f"speed:{recipe}", f"recipe:{recipe}"), keep_reserve=True)
    if refusal:
        return dict(row, skipped=refusal, over_budget=True)
    started = time.perf_counter()
    undo = None
    try:
        undo = apply_speed_options(built["bundle"], options, built["device"], built["plan"].mode)
        generator = pipelines.build_generator(
            built["bundle"],
            built["model"],
            built["plan"],
            recipe=recipe,
            num_inference_steps=args.speed_steps,
            speed=options,
        )
        kept = _capture_latents(generator)
        first = run_once(generator, args.payload, image_path, tmp / f"{recipe}-{variant}-first.mp4", built["device"])
        row["first_run_seconds"] = first["end_to_end"]
        row.update(run_once(generator, args.payload, image_path, tmp / f"{recipe}-{variant}.mp4", built["device"]))
        row.update(_speed_figures(generator, built, recipe, args, row))
        latents[variant] = kept[-1]
        row.update(_latent_difference(kept[-1], latents.get("eager")))
    except SpeedOptionUnavailable as error:
        row["unavailable"] = str(error)
    except Exception as error:  # one failing option must not hide the others' numbers
        row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300]
    finally:
        if undo is not None:
            undo()
        _free_gpu()
    row["variant_seconds"] = time.perf_counter() - started
    budget.record(f"speed:{recipe}", seconds=row["variant_seconds"])
    return row


def _capture_latents(generator) -> list:
    """Keeps each run's final video latents (on the CPU, float32), to compare a variant with the baseline."""
    kept: list = []
    run = generator.runner.run

    def run_and_keep(job):
        output = run(job)
        kept.append(output.video.detach().float().cpu())
        return output

    generator.runner.run = run_and_keep
    return kept


def _latent_difference(latents, baseline) -> dict:
    """How far a variant's final video latents are from the baseline's (same seed): 0 for bit-identical."""
    if baseline is None:
        return {}
    difference = latents - baseline
    rms = float(difference.pow(2).mean().sqrt() / baseline.pow(2).mean().sqrt().clamp(min=1e-12))
    return dict(latent_max_abs_diff=float(difference.abs().max()), latent_relative_rms=rms)


def _speed_figures(generator, built: dict, recipe: str, args, row: dict) -> dict:
    """Seconds scaled from the steps run to the model's own, TFLOP/s and the fraction of the floor."""
    from pipelines.generations import generation as generation_row
    from pipelines.interface import JobSpec

    pipe = generator.pipe
    payload = args.payload
    size = generator._plan_size(JobSpec(prompt=PROMPT, negative_prompt="", seed=0, **payload))
    flops = stage_flops(generator, size, payload, dict(pipe.transformer.config))
    steps_run = {stage: steps for stage, (_, steps) in flops.items()}
    scale = step_scale(recipe, steps_run, generation_row(built["model"]).num_inference_steps)
    scaled_stages, end_to_end = scale_seconds(row["stages"], row["end_to_end"], scale)
    scaled_flops = sum(total * scale.get(stage, 1.0) for stage, (total, _) in flops.items())
    denoise_seconds = sum(row["stages"][stage] for stage in flops)
    tflops = sum(total for total, _ in flops.values()) / 1e12 / denoise_seconds
    floor_seconds = scaled_flops / 1e12 / args.floor_tflops
    return dict(
        generated=f"{size.width}x{size.height}x{size.num_frames}",
        steps_run=steps_run,
        stages_scaled=scaled_stages,
        end_to_end_scaled=end_to_end,
        tflops_per_s=tflops,
        floor_seconds=floor_seconds,
        fraction_of_floor=floor_seconds / end_to_end,
    )


def render_speed_table(built: dict, recipe: str, args, rows: list[dict]) -> str:
    from pipelines.generations import generation as generation_row

    def cell(value, fmt="{:.2f}") -> str:
        return "-" if value is None else fmt.format(value)

    baseline = next((row.get("end_to_end_scaled") for row in rows if row["variant"] == "eager"), None)
    stages = [s for s in SPEED_ROW_STAGES if any(s in row.get("stages_scaled", {}) for row in rows)]
    memory = "peak VRAM GiB" if built["device"].type == "cuda" else "peak RSS GiB"
    header = ["variant", "first run s", *(f"{s} s" for s in stages), "end-to-end s", "speed-up", "TFLOP/s",
              "of floor", memory, "max|dlatent|", "outcome"]  # fmt: skip
    lines = []
    for row in rows:
        scaled = row.get("end_to_end_scaled")
        speed_up = baseline / scaled if baseline and scaled else None
        fraction = row.get("fraction_of_floor")
        outcome = next((f"{k}: {row[k]}" for k in ("error", "unavailable", "skipped") if k in row), "ok")
        lines.append(
            [
                row["variant"],
                cell(row.get("first_run_seconds")),
                *(cell(row.get("stages_scaled", {}).get(s)) for s in stages),
                cell(scaled),
                cell(speed_up, "{:.2f}x"),
                cell(row.get("tflops_per_s"), "{:.3g}"),
                cell(fraction * 100 if fraction is not None else None, "{:.0f}%"),
                cell(row.get("peak_gib")),
                cell(row.get("latent_max_abs_diff", 0.0 if row["variant"] == "eager" and scaled else None), "{:.2g}"),
                outcome[:90],
            ]
        )
    widths = [max(len(header[i]), *(len(line[i]) for line in lines)) for i in range(len(header))]
    scaled_stage = SCALED_STAGE.get(recipe)
    model_steps = generation_row(built["model"]).num_inference_steps
    steps = (
        f"{scaled_stage} ran {args.speed_steps} steps, its time scaled to the model's {model_steps}"
        if scaled_stage
        else "its fixed steps"
    )
    title = (
        f"speed options, {recipe} ({steps}; a first run, then the timed one, per variant); of floor: the "
        f"transformer's FLOPs at {args.floor_tflops:g} TFLOP/s over the end-to-end time; max|dlatent|: final "
        "video latents vs eager, same seed"
    )
    out = [title, " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    out.append("-" * len(out[-1]))
    out.extend(" | ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) for line in lines)
    return "\n".join(out)


# -- memory and precision options (pipelines/fp8.py, stage2.py, offload.py), side by side ----------------------
# Applied to the one loaded model in this order. The offload modes are undone after their row; merging the stage-2
# LoRA and storing in fp8 cannot be undone, so from "merged" on each row adds to the ones before it: "fp8-storage"
# is the base in fp8 with the merged stage-2 copy in fp8, "fp8-compute" both with fp8 matmuls.
MEMORY_VARIANTS = (
    "adapter",  # the baseline: bf16, the distilled LoRA as a peft adapter, placed as --offload says
    "offload-text-encoder",  # Gemma in pinned host memory, visiting the GPU for each prompt
    "offload-model",  # Gemma and the transformer(s) in pinned host memory, taking turns on the GPU
    "merged",  # stage 2 runs a second bf16 transformer with the LoRA merged at load (lossless)
    "merged-fp8",  # that copy in fp8 storage
    "fp8-storage",  # the base transformer in fp8 storage too
    "fp8-compute",  # both with fp8 matmuls (the most lossy)
)


def add_memory_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--memory",
        default="all",
        help=f"memory/precision variants to compare, after the speed ones (of {', '.join(MEMORY_VARIANTS)}; "
        "all; none); on --speed-models, --speed-steps steps, within --budget-s",
    )
    parser.add_argument(
        "--memory-recipes", default="two-stage", help="recipes of the memory comparison (default two-stage)"
    )


def resolve_memory_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    names = [name.strip() for name in args.memory.split(",") if name.strip()]
    names = list(MEMORY_VARIANTS) if names == ["all"] else [] if names == ["none"] else names
    unknown = [name for name in names if name not in MEMORY_VARIANTS]
    if unknown:
        parser.error(f"--memory: unknown {', '.join(unknown)} (known: {', '.join(MEMORY_VARIANTS)})")
    # Kept in MEMORY_VARIANTS' order (each irreversible step builds on the ones before), the baseline first.
    args.memory_list = [name for name in MEMORY_VARIANTS if name in names or (names and name == "adapter")]
    args.memory_recipe_list = [name.strip() for name in args.memory_recipes.split(",") if name.strip()]


def bench_memory_options(built: dict, args, image_path: Path, tmp: Path, report: dict, reports: list[dict]) -> bool:
    """Every --memory variant, each run for every --memory-recipes recipe; one table per recipe. Runs last: it
    changes the loaded model for good. True if a variant failed."""
    generation = next(name for name, (tiny, *_) in FULL_SIZE.items() if built["model"] in (name, tiny))
    if not args.memory_list or generation not in args.speed_model_list:
        return False
    from pipelines.generations import generation as generation_row

    recipes = [recipe for recipe in args.memory_recipe_list if recipe in generation_row(built["model"]).recipes]
    runs: dict[str, list[dict]] = {recipe: [] for recipe in recipes}
    report["memory_options"] = dict(steps=args.speed_steps, order=list(MEMORY_VARIANTS), recipes=runs)
    latents: dict[str, dict[str, object]] = {recipe: {} for recipe in recipes}
    budget = args.budget
    for variant in args.memory_list:
        first_guess = sum(budget.estimate(f"speed:{recipe}", f"recipe:{recipe}") for recipe in recipes)
        refusal = budget.refuse(budget.estimate("memory", default=first_guess), keep_reserve=True)
        if refusal:
            for recipe in recipes:
                runs[recipe].append(dict(variant=variant, skipped=refusal, over_budget=True))
            continue
        started = time.monotonic()
        rows = bench_memory_variant(built, variant, recipes, args, image_path, tmp, latents)
        budget.record("memory", seconds=time.monotonic() - started)
        for recipe, row in zip(recipes, rows, strict=True):
            runs[recipe].append(row)
            print(f"{recipe} / {variant}: {_speed_outcome(row)}", file=sys.stderr, flush=True)
        if args.json:
            _write_json(args.json, reports)
    for recipe in recipes:
        print(render_memory_table(built, recipe, args, runs[recipe]), flush=True)
    return any("error" in row for rows in runs.values() for row in rows)


def bench_memory_variant(
    built: dict, variant: str, recipes: list[str], args, image_path: Path, tmp: Path, latents: dict
) -> list[dict]:
    """Apply ``variant`` to the loaded model, run each recipe (a first run, then the timed one), undo what can be
    undone; one row per recipe."""
    try:
        undo = apply_memory_variant(built, variant)
    except Exception as error:  # e.g. no room for a second transformer: reported, the next variant goes on
        message = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300]
        _free_gpu()
        return [dict(variant=variant, error=message) for _ in recipes]
    try:
        return [memory_row(built, variant, recipe, args, image_path, tmp, latents[recipe]) for recipe in recipes]
    finally:
        undo()
        _free_gpu()


def apply_memory_variant(built: dict, variant: str):
    """Change the loaded model as ``variant`` says; returns the undo (a no-op for the changes that stay)."""
    from pipelines.fp8 import set_fp8_compute, store_blocks_in_fp8
    from pipelines.loader import merge_stage2_lora, stage2_transformer
    from pipelines.offload import host_turns

    bundle, device = built["bundle"], built["device"]
    if variant.startswith("offload-"):
        return host_turns(bundle, variant.removeprefix("offload-"), device)
    if variant == "merged":
        merge_stage2_lora(bundle, "two-stage")  # a second transformer: the distilled recipe can run it too
    elif variant == "merged-fp8":
        store_blocks_in_fp8(_require(stage2_transformer(bundle), "merged"), built["dtype"], mode="storage")
    elif variant == "fp8-storage":
        store_blocks_in_fp8(bundle.pipe.transformer, built["dtype"], mode="storage")
    elif variant == "fp8-compute":
        for transformer in {id(t): t for t in (bundle.pipe.transformer, stage2_transformer(bundle)) if t}.values():
            set_fp8_compute(transformer, True)
    return lambda: None


def _require(stage2, variant: str):
    if stage2 is None:
        raise RuntimeError(f"needs the {variant!r} variant first")
    return stage2


def memory_row(built: dict, variant: str, recipe: str, args, image_path: Path, tmp: Path, latents: dict) -> dict:
    import pipelines
    from pipelines.loader import bundle_activation_budget, bytes_on_device, component_bytes
    from pipelines.offload import RequestSize, bytes_needed

    bundle, payload = built["bundle"], args.payload
    sizes = component_bytes(bundle)
    # What the planner asks of the GPU for everything resident: this variant's weights and the payload's activations.
    request = RequestSize(payload["width"], payload["height"], payload["num_frames"], payload["fps"])
    budget = bundle_activation_budget(bundle, recipe, request)
    row: dict = dict(
        variant=variant,
        weights_gib=sum(sizes.values()) / GIB,
        on_gpu_gib=bytes_on_device(bundle, built["device"]) / GIB,
        resident_needs_gib=bytes_needed(sizes, budget.total)["none"] / GIB,
    )
    try:
        generator = pipelines.build_generator(
            bundle, built["model"], built["plan"], recipe=recipe, num_inference_steps=args.speed_steps
        )
        kept = _capture_latents(generator)
        first = run_once(generator, args.payload, image_path, tmp / f"{recipe}-{variant}-first.mp4", built["device"])
        row["first_run_seconds"] = first["end_to_end"]
        row.update(run_once(generator, args.payload, image_path, tmp / f"{recipe}-{variant}.mp4", built["device"]))
        row.update(_speed_figures(generator, built, recipe, args, row))
        latents.setdefault(variant, kept[-1])
        row.update(_latent_difference(kept[-1], latents.get("adapter")))
    except Exception as error:  # one failing variant must not hide the others' numbers
        row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300]
    return row


def render_memory_table(built: dict, recipe: str, args, rows: list[dict]) -> str:
    def cell(value, fmt="{:.2f}") -> str:
        return "-" if value is None else fmt.format(value)

    baseline = next((row.get("end_to_end_scaled") for row in rows if row["variant"] == "adapter"), None)
    memory = "peak VRAM GiB" if built["device"].type == "cuda" else "peak RSS GiB"
    header = ["variant", "weights GiB", "on GPU GiB", "none needs GiB", "stage1 s", "stage2 s", "end-to-end s",
              "speed-up", memory, "max|dlatent|", "outcome"]  # fmt: skip
    lines = []
    for row in rows:
        scaled = row.get("end_to_end_scaled")
        stages = row.get("stages_scaled", {})
        outcome = next((f"{k}: {row[k]}" for k in ("error", "skipped") if k in row), "ok")
        lines.append(
            [
                row["variant"],
                cell(row.get("weights_gib"), "{:.3g}"),
                cell(row.get("on_gpu_gib"), "{:.3g}"),
                cell(row.get("resident_needs_gib"), "{:.3g}"),
                cell(stages.get("stage1", stages.get("denoise"))),
                cell(stages.get("stage2")),
                cell(scaled),
                cell(baseline / scaled if baseline and scaled else None, "{:.2f}x"),
                cell(row.get("peak_gib")),
                cell(row.get("latent_max_abs_diff", 0.0 if row["variant"] == "adapter" and scaled else None), "{:.2g}"),
                outcome[:90],
            ]
        )
    widths = [max(len(header[i]), *(len(line[i]) for line in lines)) for i in range(len(header))]
    title = (
        f"memory and precision options, {recipe} ({args.speed_steps} guided steps scaled to the model's; a first run, "
        "then the timed one); from merged on each row adds to the ones before; none needs: the weights plus the "
        "activations the offload planner budgets for this payload; max|dlatent|: final video latents vs adapter, "
        "same seed"
    )
    out = [title, " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    out.append("-" * len(out[-1]))
    out.extend(" | ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) for line in lines)
    return "\n".join(out)


def render_table(header: str, rows: list[dict]) -> str:
    def cell(value, fmt="{:.2f}") -> str:
        return "-" if value is None else fmt.format(value)

    lines: list[tuple[str, list[str]]] = [
        ("steps", [row["steps"] for row in rows]),
        ("generated WxHxF", [row["generated"] for row in rows]),
    ]
    scaled = any("end_to_end_scaled" in row for row in rows)
    if scaled:
        lines.append(("scaled to steps", [_scaled_to(row) for row in rows]))
    for stage in STAGE_ORDER:
        if any(stage in row.get("stages", {}) for row in rows):
            seconds = [row.get("stages_scaled", row.get("stages", {})).get(stage) for row in rows]
            lines.append((f"{stage} s", [cell(value) for value in seconds]))
    lines.append(("end-to-end s", [cell(row.get("end_to_end_scaled", row.get("end_to_end"))) for row in rows]))
    if scaled:
        lines.append(("end-to-end s, as run", [cell(row.get("end_to_end")) for row in rows]))
    for stage in ("stage1", "denoise", "stage2"):
        if any(stage in row.get("steps_per_stage", {}) for row in rows):
            values = []
            for row in rows:
                steps = row.get("steps_per_stage", {}).get(stage)
                seconds = row.get("stages", {}).get(stage)
                values.append(cell(seconds / steps if steps and seconds else None, "{:.3f}"))
            lines.append((f"{stage} s/step", values))
    lines.append(
        ("transformer PFLOP", [cell(sum(row["pflop"].values()) if "pflop" in row else None, "{:.3g}") for row in rows])
    )
    for stage in ("stage1", "denoise", "stage2"):
        if any(stage in row.get("tflops_per_s", {}) for row in rows):
            lines.append((f"{stage} TFLOP/s", [cell(row.get("tflops_per_s", {}).get(stage), "{:.3g}") for row in rows]))
    lines.append(("all denoising TFLOP/s", [cell(row.get("tflops_per_s", {}).get("all"), "{:.3g}") for row in rows]))
    memory = "peak VRAM GiB" if any(row.get("on_cuda") for row in rows) else "peak RSS GiB (process)"
    lines.append((memory, [cell(row.get("peak_gib")) for row in rows]))
    lines.append(("warm-up run s", [cell(row.get("warmup_seconds")) for row in rows]))
    if any("error" in row for row in rows):
        lines.append(("error", [row.get("error", "") for row in rows]))
    if any("skipped" in row for row in rows):
        lines.append(("skipped", [row.get("skipped", "") for row in rows]))
    names = [row["recipe"] for row in rows]
    label_width = max(len(label) for label, _ in lines)
    widths = [max(len(name), *(len(values[i]) for _, values in lines)) for i, name in enumerate(names)]
    out = [header, " | ".join(["metric".ljust(label_width), *(n.rjust(w) for n, w in zip(names, widths, strict=True))])]
    out.append("-" * len(out[-1]))
    for label, values in lines:
        out.append(" | ".join([label.ljust(label_width), *(v.rjust(w) for v, w in zip(values, widths, strict=True))]))
    return "\n".join(out)


def _scaled_to(row: dict) -> str:
    return "+".join(str(steps) for steps in row.get("steps_scaled_to", {}).values()) or "-"


def write_test_image(path: Path, width: int, height: int) -> None:
    import numpy as np
    from PIL import Image

    # A smooth colour field at the request's aspect ratio: the cover-crop keeps all of it.
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x / width, y / height, 0.5 + 0.5 * np.sin(x / 37.0) * np.cos(y / 53.0)], axis=-1)
    Image.fromarray((rgb * 255).astype("uint8")).save(path)


def main(argv=None) -> int:
    started = time.monotonic()
    args = parse_args(argv)
    args.budget = Budget(args.budget_s, started)
    reports: list[dict] = []
    status = 0
    # A run stopped at its time limit (SIGTERM) still prints the tables of what finished.
    signal.signal(signal.SIGTERM, _interrupt)
    for generation in args.model_list:
        refusal = args.budget.refuse(args.budget.estimate("build", default=BUILD_ESTIMATE_S[generation]))
        if refusal:
            skip_generation(args, generation, refusal, reports)
            continue
        try:
            code, report = bench_generation(args, generation, reports)
        except KeyboardInterrupt:
            print(f"{generation}: INTERRUPTED while building", file=sys.stderr, flush=True)
            return 1
        status = max(status, code)
        if report.get("interrupted"):
            return 1
        _free_gpu()
    if status == 0 and args.budget.cut_short:
        print(f"cut short by --budget-s {args.budget_s:.0f}: see what was skipped", file=sys.stderr, flush=True)
        return EXIT_CUT_SHORT
    return status


def skip_generation(args, generation: str, reason: str, reports: list[dict]) -> None:
    """A generation the time budget leaves unbuilt: one line where its table would be, and in the JSON."""
    print(f"{generation}: skipped, {reason}", flush=True)
    print(f"{generation}: skipped, {reason}", file=sys.stderr, flush=True)
    reports.append(dict(model=generation, skipped=reason, over_budget=True, recipes=[]))
    if args.json:
        _write_json(args.json, reports)


def _free_gpu() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def bench_generation(args, generation: str, reports: list[dict]) -> tuple[int, dict]:
    """Build, place and time one generation; print its table. ``reports`` gathers every generation's numbers
    for --json (written after each recipe)."""
    from pipelines.generations import generation as generation_row

    began = time.monotonic()
    built = build(args, generation)
    timings = built["timings"]
    args.budget.record("build", seconds=timings["total"])
    print(
        f"built {built['model']} on {built['device_name']} in {timings['total']:.1f} s ("
        + ", ".join(f"{k} {v:.1f}" for k, v in timings.items() if k != "total")
        + f"); offload {built['plan'].mode}: {built['plan'].reason}",
        file=sys.stderr,
        flush=True,
    )
    payload = args.payload
    served = generation_row(generation)
    size = "tiny" if args.tiny else f"{served.parameters}, random weights"
    header = (
        f"{served.title} {size} on {built['device_name']}, "
        f"{str(built['dtype']).removeprefix('torch.')}, offload {built['plan'].mode}; "
        f"payload {payload['width']}x{payload['height']}, {payload['num_frames']} frames @ {payload['fps']} fps, "
        f"guidance {payload['guidance_scale']}; build {timings['total']:.1f} s"
    )
    scaled = [recipe for recipe in args.recipe_list if recipe in args.scaled_recipes]
    if scaled:
        # The steps the rows are scaled to: the built model's own (bench_recipe).
        header += "; " + scaling_note(scaled, args.steps, generation_row(built["model"]).num_inference_steps)
    rows: list[dict] = []
    printed = False
    report = dict(model=built["model"], header=header, device=built["device_name"], build_seconds=timings,
                  payload=payload, recipes=rows)  # fmt: skip
    reports.append(report)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            image_path = Path(tmp) / "input.png"
            write_test_image(image_path, payload["width"], payload["height"])
            for recipe in args.recipe_list:
                rows.append(time_recipe(built, recipe, args, image_path, Path(tmp)))
                row = rows[-1]
                outcome = row.get("error") or row.get("skipped") or f"{row['end_to_end']:.2f} s end to end"
                print(f"{recipe}: {outcome}", file=sys.stderr, flush=True)
                if args.json:
                    _write_json(args.json, reports)
            if rows:
                print(render_table(header, rows), flush=True)
            printed = True
            args.budget.record("generation", seconds=time.monotonic() - began)
            still_to_build = len(args.model_list) - 1 - args.model_list.index(generation)
            args.budget.reserve_s = still_to_build * args.budget.estimate("generation")
            speed_failed = bench_speed_options(built, args, image_path, Path(tmp), report, reports)
            speed_failed = bench_memory_options(built, args, image_path, Path(tmp), report, reports) or speed_failed
    except KeyboardInterrupt:
        report["interrupted"] = True
        speed_failed = True
        if not printed:
            header += "; INTERRUPTED before " + ", ".join(args.recipe_list[len(rows) :])
            print(render_table(header, rows), flush=True)
    del built
    failed = any("error" in row for row in rows) or len(rows) < len(args.recipe_list) or speed_failed
    return (1 if failed else 0), report


def time_recipe(built: dict, recipe: str, args, image_path: Path, tmp: Path) -> dict:
    """bench_recipe, unless the time budget leaves no room for it (estimated from the same recipe on the
    generation before, else the last recipe); records how long it took."""
    budget = args.budget
    if not recipe_not_offered(built["model"], recipe):
        refusal = budget.refuse(budget.estimate(f"recipe:{recipe}", "recipe"))
        if refusal:
            return dict(recipe=recipe, steps="-", generated="-", skipped=refusal, over_budget=True)
    started = time.monotonic()
    row = bench_recipe(built, recipe, args, image_path, tmp)
    if "skipped" not in row:
        budget.record(f"recipe:{recipe}", "recipe", seconds=time.monotonic() - started)
    return row


def scaling_note(recipes: list[str], steps: int, model_steps: int) -> str:
    """What the table's scaled times are, e.g. "stage 1 run at 8 steps, scaled to 40"."""
    what = {
        ("two-stage",): "stage 1",
        ("one-stage",): "one-stage",
    }.get(tuple(recipes), "stage 1 (one-stage: every step)")
    return f"{what} run at {steps} steps, scaled to {model_steps}"


def _write_json(path: Path, reports: list[dict]) -> None:
    """One generation: its report as before (header, device, build_seconds, payload, recipes); several: a list
    of them under "generations"."""
    document = dict(reports[0]) if len(reports) == 1 else {"generations": reports}
    path.write_text(json.dumps(document, indent=2))


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
