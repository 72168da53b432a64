"""Generation side of ltx2-server: runs only in the worker process.

Imports torch and diffusers; never imports fastapi or ``server``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .generations import GENERATIONS, generation

if TYPE_CHECKING:
    from .generate import LTX2Generator
    from .speed import SpeedOptions

__all__ = ["build_generator", "load_generator", "MODELS"]

# Per-generation defaults (steps, guidance, x264, prompt length...) live in one table, pipelines/generations.py.
MODELS = tuple(GENERATIONS)


def load_generator(
    model: str,
    *,
    weights: str = "weights",
    device: str = "auto",
    dtype: str = "auto",
    offload: str = "auto",
    fp8: bool | str = "off",
    stage2_lora: str = "adapter",
    plan_request: tuple[int, int, int] | None = None,
    recipe: str = "two-stage",
    guidance: str = "ltx-pipelines",
    x264_preset: str | None = None,
    x264_crf: int | None = None,
    num_inference_steps: int | None = None,
    num_threads: int | None = None,
    compile: str = "off",
    attention: str = "auto",
    decode_chunk_frames: int = 48,
    cache_negative_prompt: bool = True,
    loras: str = "",
) -> "LTX2Generator":
    """Build a ready-to-use Generator. Heavy imports (torch, diffusers) happen here, not at import time.

    ``num_threads`` caps torch's CPU threads (None: every core this process may run on); several
    workers on one host's CPU each take their share, or their thread pools fight over the cores.

    ``model`` is a row of pipelines/generations.py. The tiny test models (``tiny``, ``tiny-2.3``) are built
    in code; the others load from ``weights`` (offline: the hub is never asked), for ``recipe``: the
    distilled recipe uses Lightricks' distilled checkpoint when ``weights`` holds it.
    The returned generator's ``description`` says what was loaded and which offload mode was chosen, why
    (and, for the distilled recipe, which distilled model).

    Speed (pipelines/speed.py; an option that cannot run here is refused before any weights load):
    ``compile`` off|regional (torch.compile of the transformer's repeated block; the first request of each
    kind pays the compile); ``attention`` auto|sdpa|cudnn|flash4|sage (the transformer's attention kernel;
    sage is approximate); ``decode_chunk_frames`` frames per chunk of the video decode (0: one pass, more
    memory); ``cache_negative_prompt`` keeps the negative prompt's encoding between requests (same output).

    Memory and precision (pipelines/fp8.py, stage2.py, offload.py): ``fp8`` off|storage|compute (True:
    storage; fp8 weights with bf16 matmuls, or fp8 matmuls too, which is lossier); ``stage2_lora``
    adapter|merged|merged-fp8 (the distilled LoRA as a peft adapter, or merged once at load into a second
    transformer, kept in the weights' dtype or in fp8); ``plan_request`` (width, height, num_frames): the
    largest request ``offload`` budgets activation memory for (None: the API's default, 720x1280x181).

    ``loras``: a folder of the user's LoRA .safetensors files (pipelines/loras.py), each loaded once as an
    adapter that a request switches on by name (JobSpec.loras); "" loads none. A file that cannot be applied
    to this model is an error naming it. ``generator.available_loras`` lists their names.
    """
    from .speed import SpeedOptions

    speed = SpeedOptions(
        compile=compile,
        attention=attention,
        decode_chunk_frames=decode_chunk_frames,
        cache_negative_prompt=cache_negative_prompt,
    )
    chosen = generation(model)
    if recipe not in chosen.recipes:
        raise ValueError(f"recipe: {model} offers {', '.join(chosen.recipes)}; got {recipe!r}")
    import os

    if not chosen.is_tiny:
        # Set before diffusers/huggingface_hub are imported: they read it once, at import.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from .fp8 import fp8_mode
    from .loader import (
        build_tiny_bundle,
        describe_distilled_source,
        load_bundle_for,
        place_bundle,
        prepare_transformers,
        resolve_device,
        resolve_dtype,
    )
    from .lora_files import list_loras
    from .offload import DEFAULT_PLAN_REQUEST, RequestSize
    from .speed import apply_speed_options, check_speed_options
    from .stage2 import check_stage2_lora

    # Use every core the process may run on; torch's default can count hyperthreads or the whole host.
    torch.set_num_threads(num_threads or max(1, len(os.sched_getaffinity(0))))
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    check_speed_options(speed, torch_device)
    fp8, stage2_lora = fp8_mode(fp8), check_stage2_lora(stage2_lora)
    if loras and "loras" not in chosen.request_features:
        raise ValueError(f"loras: {chosen.title} does not take LoRAs; start it without --loras")
    lora_files = list_loras(loras)  # a bad folder or file header fails here, before any weights load
    if chosen.is_tiny:
        bundle = build_tiny_bundle(model)
        if torch_dtype != torch.float32:  # built in float32
            bundle.pipe.to(torch_dtype)
            if bundle.latent_upsampler is not None:  # LTX-2.5 has none
                bundle.latent_upsampler.to(torch_dtype)
    else:
        bundle = load_bundle_for(model, weights, torch_dtype, recipe=recipe)
    precision = prepare_transformers(
        bundle, torch_dtype, recipe=recipe, fp8=fp8, stage2_lora=stage2_lora, loras=lora_files
    )
    request = DEFAULT_PLAN_REQUEST if plan_request is None else RequestSize(*plan_request)
    plan = place_bundle(
        bundle, offload, torch_device, recipe=recipe, request=request, decode_chunk_frames=decode_chunk_frames or None
    )
    apply_speed_options(bundle, speed, torch_device, plan.mode)
    generator = build_generator(
        bundle,
        model,
        plan,
        recipe=recipe,
        guidance=guidance,
        num_inference_steps=num_inference_steps,
        x264_preset=x264_preset,
        x264_crf=x264_crf,
        speed=speed,
    )
    distilled = ""
    if recipe == "distilled":
        distilled = f"; {describe_distilled_source(bundle, None if chosen.is_tiny else weights)}"
    generator.description = (
        f"model {model}, recipe {recipe} ({generator.spec.total_steps} steps), {torch_device.type} "
        f"{str(torch_dtype).removeprefix('torch.')}{', ' + precision if precision else ''}; "
        f"offload {plan.mode}: {plan.reason}{distilled}; guidance {generator.guidance_summary}; "
        f"{speed.summary()}{'; ' + bundle.user_loras.summary() if bundle.user_loras is not None else ''}"
    )
    return generator


def build_generator(
    bundle,
    model: str,
    plan,
    *,
    recipe: str = "two-stage",
    guidance: str = "ltx-pipelines",
    num_inference_steps: int | None = None,
    x264_preset: str | None = None,
    x264_crf: int | None = None,
    speed: "SpeedOptions | None" = None,
) -> "LTX2Generator":
    """A placed LTX2Bundle -> the Generator the worker runs, with ``model``'s defaults for what is not given.

    The one place this happens: the server (through ``load_generator``) and scripts/bench_gpu.py share it,
    so the benchmark times exactly what the server runs. ``speed`` gives the generator its video decode chunk
    and negative prompt cache (its compile and attention are applied to the bundle by apply_speed_options).
    """
    from .generate import LTX2Generator
    from .speed import SpeedOptions

    speed = speed or SpeedOptions()

    defaults = generation(model)
    # LTX-2.5's bundle names its own generator (pipelines/ltx25.py: the diffusion-decoder decode).
    generator_class = getattr(bundle, "generator_class", LTX2Generator)
    return generator_class(
        bundle,
        recipe=recipe,
        guidance=defaults.guidance_policy(guidance),
        num_inference_steps=num_inference_steps or defaults.num_inference_steps,
        x264_preset=x264_preset or defaults.x264_preset,
        x264_crf=x264_crf if x264_crf is not None else defaults.x264_crf,
        max_sequence_length=defaults.max_sequence_length,
        use_vae_decode=plan.vae_tiling,
        decode_chunk_frames=speed.decode_chunk_frames,
        cache_negative_prompt=speed.cache_negative_prompt,
    )
