"""Loads LTX-2 once per worker: from a weights folder (LTX-2 19B, or a tiny model saved in the same
layout), or the tiny model built in code. Every path ends in the same LTX2Bundle, so the tests exercise
the loader that production uses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from .checkpoint_keys import CHECKPOINT_TRANSFORMER_PREFIX, convert_connectors_to_diffusers, is_connector_key
from .lora_files import LoraFile
from .offload import (
    DEFAULT_DECODE_CHUNK_FRAMES,
    DEFAULT_PLAN_REQUEST,
    GIB,
    ActivationBudget,
    OffloadPlan,
    RequestSize,
    activation_budget,
    apply_offload,
    module_bytes,
    plan_offload,
)
from .weights import (
    DISTILLED_CHECKPOINT_FILE,
    DISTILLED_LORA_FILE,
    FP8_CHECKPOINT_FILE,
    LATENT_UPSAMPLER_DIR,
    distilled_checkpoint,
    require_complete_weights,
    uses_fp8_checkpoint,
)

log = logging.getLogger("ltx2.loader")

DISTILLED_ADAPTER = "stage2_distilled"
DTYPES = {"auto": None, "bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


_FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)


@dataclass
class LTX2Bundle:
    pipe: Any  # LTX2ImageToVideoPipeline (diffusers' pipelines are not statically typed)
    latent_upsampler: Any  # LTX2LatentUpsamplerModel, or None
    distilled_adapter: str | None  # peft adapter name of the stage-2 distilled LoRA (disabled between uses)
    fp8_checkpoint: bool = False  # the transformer came from one of Lightricks' fp8 checkpoints
    after_prompt: Callable[[], None] | None = None  # called once the prompt is encoded (offload hooks)
    # Where the distilled recipe's distilled model comes from:
    # - "lora": the base transformer with the distilled LoRA (distilled_adapter) switched on;
    #   distilled_transformer is None.
    # - "checkpoint": Lightricks' full distilled checkpoint (distilled_checkpoint_file names it). Its
    #   transformer IS pipe.transformer (distilled_transformer is the same object, so it is placed,
    #   offloaded and stored in fp8 as pipe.transformer is); the base transformer and the LoRA were never
    #   loaded (distilled_adapter is None): every stage runs pipe.transformer as it is.
    distilled_transformer: object | None = None
    distilled_source: str = "lora"
    distilled_checkpoint_file: str | None = None
    # With the checkpoint, pipe.connectors (the text connectors: Gemma hidden states -> video and audio
    # contexts) come from that file too, as in Lightricks' distilled pipeline; False when the file has
    # none of their tensors and the weights folder's connectors/ is used instead.
    distilled_connectors: bool = False
    # Lightricks' fp8 checkpoint's own scales, by diffusers module name: (weight_scale, input_scale or None);
    # fp8 storage re-quantises each matrix with them, which gives back the checkpoint's fp8 values exactly.
    fp8_scales: dict[str, tuple[torch.Tensor, torch.Tensor | None]] | None = None
    # How the distilled LoRA reaches the stages that use it (pipelines/stage2.py): "adapter" or "merged".
    stage2_lora: str = "adapter"
    # The user's LoRAs (pipelines/loras.py LoraLibrary) when the server was started with --loras, else None.
    user_loras: Any = None


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} was asked for but CUDA is not available (torch {torch.__version__})")
    return resolved


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name not in DTYPES:
        raise ValueError(f"dtype: must be one of {', '.join(DTYPES)}; got {name!r}")
    # bf16 is LTX-2's native precision on GPUs; CPUs run float32 far faster than emulated bf16.
    return DTYPES[name] or (torch.bfloat16 if device.type == "cuda" else torch.float32)


def load_bundle_from_weights(
    weights_dir: str | Path, dtype: torch.dtype, *, recipe: str = "two-stage"
) -> LTX2Bundle:
    """The bundle for ``recipe``. Only the distilled recipe reads Lightricks' distilled checkpoint, and only
    when it is in ``weights_dir``: its transformer then becomes pipe.transformer, in place of the base one
    (never loaded), and the distilled LoRA is not loaded either (see LTX2Bundle.distilled_source); the
    text connectors come from that file too when it has them (LTX2Bundle.distilled_connectors)."""
    from diffusers import LTX2ImageToVideoPipeline
    from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel

    weights_dir = Path(weights_dir)
    require_complete_weights(weights_dir)
    distilled_file = distilled_checkpoint(weights_dir) if recipe == "distilled" else None
    transformer, connectors, fp8_checkpoint = None, None, False
    if distilled_file is not None:
        transformer, fp8_checkpoint = load_checkpoint_transformer(distilled_file, weights_dir / "transformer", dtype)
        connectors = load_checkpoint_connectors(distilled_file, weights_dir / "connectors", dtype)
    elif uses_fp8_checkpoint(weights_dir):
        transformer, fp8_checkpoint = load_checkpoint_transformer(
            weights_dir / FP8_CHECKPOINT_FILE, weights_dir / "transformer", dtype
        )
    components = {} if transformer is None else {"transformer": transformer}
    if connectors is not None:
        components["connectors"] = connectors
    pipe = LTX2ImageToVideoPipeline.from_pretrained(weights_dir, dtype=dtype, local_files_only=True, **components)
    upsampler = LTX2LatentUpsamplerModel.from_pretrained(
        weights_dir / LATENT_UPSAMPLER_DIR, dtype=dtype, local_files_only=True
    ).eval()
    if distilled_file is None:
        pipe.load_lora_weights(str(weights_dir), weight_name=DISTILLED_LORA_FILE, adapter_name=DISTILLED_ADAPTER)
        bundle = _finish_bundle(pipe, upsampler)
    else:
        bundle = _finish_bundle(pipe, upsampler, adapter=None)
        bundle.distilled_transformer = pipe.transformer
        bundle.distilled_source = "checkpoint"
        bundle.distilled_checkpoint_file = distilled_file.name
        bundle.distilled_connectors = connectors is not None
    bundle.fp8_checkpoint = fp8_checkpoint
    if fp8_checkpoint:
        bundle.fp8_scales = read_fp8_scales(distilled_file or weights_dir / FP8_CHECKPOINT_FILE)
    if recipe == "distilled":
        log.info("%s", describe_distilled_source(bundle, weights_dir))
    return bundle


def describe_distilled_source(bundle: LTX2Bundle, weights_dir: str | Path | None = None) -> str:
    """Which distilled model the distilled recipe runs, for the start-up log and the generator's description."""
    if bundle.distilled_source == "checkpoint":
        if bundle.distilled_connectors:
            return f"distilled: checkpoint {bundle.distilled_checkpoint_file} (transformer and text connectors)"
        return (
            f"distilled: checkpoint {bundle.distilled_checkpoint_file} (transformer only: the file has no "
            "text connector tensors, so they come from connectors/)"
        )
    merged = ", merged at load" if bundle.stage2_lora == "merged" else ""
    if weights_dir is None:  # a model built in code: no weights folder to look in
        return f"distilled: base model + distilled LoRA{merged}"
    # With the LoRA, distilled_checkpoint_file (when set) names the checkpoint that was looked for instead.
    looked_for = bundle.distilled_checkpoint_file or DISTILLED_CHECKPOINT_FILE
    return f"distilled: base model + distilled LoRA ({looked_for} not in {weights_dir}){merged}"


def load_checkpoint_transformer(checkpoint_file: Path, config_dir: Path, dtype: torch.dtype):
    """The transformer of one of Lightricks' single-file checkpoints (dev fp8, distilled bf16 or fp8), and
    whether the file stored it in fp8.

    These files bundle the transformer (``model.diffusion_model.*``, in Lightricks' own key names) with
    the VAEs and more, which are skipped here. The fp8 ones store float8_e4m3fn weights W with a float
    ``W_scale`` each (``...weight`` and ``...weight_scale``; ``input_scale`` is for fp8 activations,
    unused here). diffusers' single-file converter renames keys but drops the scales, which would leave
    every weight off by its scale; so the weights are dequantised here (W * scale), renamed with
    diffusers' own converter, and loaded into a transformer built from ``config_dir``/config.json. The
    caller keeps an fp8 one in fp8 storage afterwards.
    """
    from accelerate import init_empty_weights
    from diffusers import LTX2VideoTransformer3DModel
    from diffusers.loaders.single_file_utils import convert_ltx2_transformer_to_diffusers
    from safetensors import safe_open

    with safe_open(str(checkpoint_file), framework="pt") as checkpoint:
        # The text connectors share the transformer's prefix; the converter would drop them anyway.
        names = [
            name
            for name in checkpoint.keys()
            if name.startswith(CHECKPOINT_TRANSFORMER_PREFIX) and not is_connector_key(name)
        ]
        state, stored_in_fp8 = _read_dequantized(checkpoint, names, dtype)
    if not state:
        raise ValueError(f"{checkpoint_file}: holds no transformer tensors ({CHECKPOINT_TRANSFORMER_PREFIX}*)")
    state = convert_ltx2_transformer_to_diffusers(state)
    config = LTX2VideoTransformer3DModel.load_config(config_dir)
    with init_empty_weights():
        transformer = LTX2VideoTransformer3DModel.from_config(config)
    transformer.load_state_dict(state, strict=True, assign=True)
    return transformer.to(dtype).eval(), stored_in_fp8


def load_checkpoint_connectors(checkpoint_file: Path, config_dir: Path, dtype: torch.dtype):
    """The text connectors (diffusers' LTX2TextConnectors) of one of Lightricks' single-file checkpoints,
    or None when the file holds none of their tensors.

    Lightricks' pipelines build their text path (ltx-core's embeddings processor) from the checkpoint they
    run: ``text_embedding_projection.aggregate_embed.*`` and ``model.diffusion_model.{video,audio}_
    embeddings_connector.*`` (pipelines/checkpoint_keys.py maps them to diffusers' names). They are loaded
    strictly into connectors built from ``config_dir``/config.json, fp8 scales applied when the file has
    any for them; a file with only some of them is an error, not a mix of two models.
    """
    from accelerate import init_empty_weights
    from diffusers.pipelines.ltx2 import LTX2TextConnectors
    from safetensors import safe_open

    with safe_open(str(checkpoint_file), framework="pt") as checkpoint:
        names = [name for name in checkpoint.keys() if is_connector_key(name)]
        if not names:
            return None
        state, _stored_in_fp8 = _read_dequantized(checkpoint, names, dtype)
    state = convert_connectors_to_diffusers(state)
    config = LTX2TextConnectors.load_config(config_dir)
    with init_empty_weights():
        connectors = LTX2TextConnectors.from_config(config)
    try:
        connectors.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as error:
        raise ValueError(
            f"{checkpoint_file}: its text connector tensors do not fit {config_dir}/config.json: {error}"
        ) from error
    return connectors.to(dtype).eval()


def read_fp8_scales(checkpoint_file: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
    """The transformer's fp8 scales in one of Lightricks' checkpoints, by diffusers module name:
    ``weight_scale`` (W ~= q * scale) and ``input_scale`` (the calibrated activation scale of fp8
    matmuls, or None). Renamed by diffusers' own converter, as the weights are."""
    from diffusers.loaders.single_file_utils import convert_ltx2_transformer_to_diffusers
    from safetensors import safe_open

    by_kind: dict[str, dict[str, torch.Tensor]] = {"weight_scale": {}, "input_scale": {}}
    with safe_open(str(checkpoint_file), framework="pt") as checkpoint:
        for name in checkpoint.keys():
            module, _, kind = name.rpartition(".")
            if kind in by_kind and name.startswith(CHECKPOINT_TRANSFORMER_PREFIX) and not is_connector_key(name):
                # Named as the module's weight, so the converter renames it as it renames the weight.
                by_kind[kind][f"{module}.weight"] = checkpoint.get_tensor(name).float()
    weight_scales, input_scales = (
        {name.removesuffix(".weight"): tensor for name, tensor in convert_ltx2_transformer_to_diffusers(found).items()}
        for found in by_kind.values()
    )
    return {name: (scale, input_scales.get(name)) for name, scale in weight_scales.items()}


def _read_dequantized(checkpoint, names: list[str], dtype: torch.dtype) -> tuple[dict[str, torch.Tensor], bool]:
    """``names`` from an open safetensors file in ``dtype``, and whether any was stored in fp8. An fp8 tensor
    ``W`` comes with a float ``W_scale`` (``...weight`` / ``...weight_scale``) and is read as W * scale; the
    ``*_scale`` entries themselves (``input_scale`` too: for fp8 activations, unused here) are not returned."""
    present = set(checkpoint.keys())
    state: dict[str, torch.Tensor] = {}
    stored_in_fp8 = False
    for name in names:
        if name.endswith("_scale"):
            continue
        tensor = checkpoint.get_tensor(name)
        stored_in_fp8 = stored_in_fp8 or tensor.dtype in _FP8_DTYPES
        if f"{name}_scale" in present:
            tensor = tensor.float() * checkpoint.get_tensor(f"{name}_scale").float()
        state[name] = tensor.to(dtype)
    return state, stored_in_fp8


def build_tiny_bundle(model: str = "tiny") -> LTX2Bundle:
    """A tiny test model built in code: ``tiny`` (LTX-2.0's architecture), ``tiny-2.3`` (LTX-2.3's) or
    ``tiny-2.5`` (LTX-2.5's, pipelines/tiny25.py)."""
    if model == "tiny-2.3":
        from .tiny23 import build_tiny23_distilled_lora, build_tiny23_latent_upsampler, build_tiny23_pipeline

        pipe = build_tiny23_pipeline()
        pipe.load_lora_weights(build_tiny23_distilled_lora(pipe.transformer), adapter_name=DISTILLED_ADAPTER)
        return _finish_bundle(pipe, build_tiny23_latent_upsampler())
    if model == "tiny-2.5":
        from .tiny25 import build_tiny25_bundle

        return build_tiny25_bundle()
    if model != "tiny":
        raise ValueError(f"no tiny model {model!r} (tiny, tiny-2.3, tiny-2.5)")
    from .tiny import build_tiny_distilled_lora, build_tiny_latent_upsampler, build_tiny_pipeline

    pipe = build_tiny_pipeline()
    pipe.load_lora_weights(build_tiny_distilled_lora(pipe.transformer), adapter_name=DISTILLED_ADAPTER)
    return _finish_bundle(pipe, build_tiny_latent_upsampler())


def load_bundle_for(
    model: str, weights_dir: str | Path, dtype: torch.dtype, *, recipe: str = "two-stage"
) -> LTX2Bundle:
    """The bundle of a served generation (a row of pipelines/generations.py) from its weights folder."""
    from .generations import generation

    layout = generation(model).weights_layout
    if layout == "diffusers-folder":
        return load_bundle_from_weights(weights_dir, dtype, recipe=recipe)
    if layout == "single-file":
        from .single_file import load_single_file_bundle

        return load_single_file_bundle(weights_dir, dtype, recipe=recipe, model=model)
    if layout == "diffusers-components":
        from .ltx25 import load_ltx25_bundle

        return load_ltx25_bundle(weights_dir, dtype, recipe=recipe)
    raise ValueError(f"{model}: no weights layout to load from (built in code?)")


def _finish_bundle(pipe, upsampler, *, adapter: str | None = DISTILLED_ADAPTER) -> LTX2Bundle:
    if adapter is not None:
        pipe.disable_lora()  # on only for the stages that use it
    pipe.set_progress_bar_config(disable=True)
    return LTX2Bundle(pipe=pipe, latent_upsampler=upsampler, distilled_adapter=adapter)


def store_transformer_in_fp8(bundle: LTX2Bundle, compute_dtype: torch.dtype, mode: str = "storage") -> None:
    """Keep the transformer blocks' matrices in scaled float8 (pipelines/fp8.py): ``storage`` upcasts per
    layer as it runs, ``compute`` runs fp8 matmuls. About half the memory of bf16 for the largest component.
    A merged stage-2 transformer (pipelines/stage2.py) is stored the same way."""
    from .fp8 import store_blocks_in_fp8

    store_blocks_in_fp8(bundle.pipe.transformer, compute_dtype, mode=mode, checkpoint_scales=bundle.fp8_scales)
    stage2 = stage2_transformer(bundle)
    if stage2 is not None:
        store_blocks_in_fp8(stage2, compute_dtype, mode=mode)


def stage2_transformer(bundle: LTX2Bundle) -> torch.nn.Module | None:
    """The merged stage-2 transformer kept beside the base one, or None (one transformer does everything)."""
    stage2 = bundle.distilled_transformer
    if isinstance(stage2, torch.nn.Module) and stage2 is not bundle.pipe.transformer:
        return stage2
    return None


def prepare_transformers(
    bundle: LTX2Bundle,
    compute_dtype: torch.dtype,
    *,
    recipe: str,
    fp8: str = "off",
    stage2_lora: str = "adapter",
    loras: Sequence[LoraFile] = (),
) -> str:
    """Apply the precision options at load, in order: the stage-2 LoRA merged (from the unquantised
    weights), the user's ``loras`` added as adapters (after the merge, which drops every adapter of the
    transformer it merges; before fp8, which stores their factors as it stores the distilled LoRA's), then
    fp8. Returns what was done, for the generator's description ("" when nothing was)."""
    from .fp8 import fp8_mode, store_blocks_in_fp8
    from .stage2 import check_stage2_lora

    fp8 = fp8_mode(fp8)
    stage2_lora = check_stage2_lora(stage2_lora)
    if fp8 == "off" and bundle.fp8_checkpoint:
        fp8 = "storage"  # a transformer read from the fp8 checkpoint stays in fp8: its download was chosen for that
    done = []
    merged = stage2_lora != "adapter" and merge_stage2_lora(bundle, recipe)
    if merged:
        done.append("stage-2 LoRA merged at load")
    if loras:
        attach_user_loras(bundle, loras)
    stage2 = stage2_transformer(bundle)
    if merged and stage2_lora == "merged-fp8" and fp8 == "off" and stage2 is None:
        fp8 = "storage"  # the distilled recipe's one transformer is the merged one
    if fp8 != "off":
        store_transformer_in_fp8(bundle, compute_dtype, fp8)
        done.append("transformer stored in fp8" + (", fp8 matmuls" if fp8 == "compute" else ""))
    elif stage2_lora == "merged-fp8" and stage2 is not None:
        store_blocks_in_fp8(stage2, compute_dtype, mode="storage")
        done.append("merged stage-2 transformer stored in fp8")
    return ", ".join(done)


def attach_user_loras(bundle: LTX2Bundle, files: Sequence[LoraFile]) -> None:
    """The user's LoRAs as adapters on every transformer a stage runs (pipelines/loras.py): the base one, whose
    resting active adapter is the distilled LoRA's when it has one, and a merged stage-2 copy."""
    from .loras import load_library

    resting: dict[torch.nn.Module, tuple[str, ...]] = {
        bundle.pipe.transformer: () if bundle.distilled_adapter is None else (bundle.distilled_adapter,)
    }
    stage2 = stage2_transformer(bundle)
    if stage2 is not None:
        resting[stage2] = ()
    bundle.user_loras = load_library(files, resting)


def merge_stage2_lora(bundle: LTX2Bundle, recipe: str) -> bool:
    """Merge the distilled LoRA at load (pipelines/stage2.py): into a second transformer for two-stage's
    stage 2, into the base itself for the distilled recipe (which never runs the base). False when there is
    nothing to merge: one-stage never runs the LoRA; a distilled checkpoint or LTX-2.5 has none."""
    from .stage2 import merge_adapter_into, merged_copy

    adapter, pipe = bundle.distilled_adapter, bundle.pipe
    if adapter is None or recipe == "one-stage":
        return False
    if recipe == "distilled":
        changed = set(merge_adapter_into(pipe.transformer, adapter))
        bundle.distilled_transformer = pipe.transformer
        if bundle.fp8_scales:  # a merged matrix is no longer the checkpoint's: it gets scales of its own
            bundle.fp8_scales = {name: v for name, v in bundle.fp8_scales.items() if name not in changed}
    else:
        bundle.distilled_transformer = merged_copy(pipe.transformer, adapter)
        pipe.unload_lora_weights()
    bundle.distilled_adapter = None
    bundle.stage2_lora = "merged"
    return True


_PIPE_COMPONENTS = ("transformer", "text_encoder", "connectors", "vae", "audio_vae", "vocoder")


def _bundle_modules(bundle: LTX2Bundle) -> dict[str, torch.nn.Module]:
    # bundle.distilled_transformer, when set, is pipe.transformer (counted and placed as that) or the merged
    # stage-2 transformer.
    modules = {name: getattr(bundle.pipe, name) for name in _PIPE_COMPONENTS}
    stage2 = stage2_transformer(bundle)
    if stage2 is not None:
        modules["stage2_transformer"] = stage2
    if bundle.latent_upsampler is not None:
        modules["latent_upsampler"] = bundle.latent_upsampler
    decoder = getattr(bundle, "diffusion_decoder", None)  # LTX-2.5 (pipelines/ltx25.py)
    if decoder is not None:
        modules["diffusion_decoder"] = decoder
    return modules


def component_bytes(bundle: LTX2Bundle) -> dict[str, int]:
    return {name: module_bytes(module) for name, module in _bundle_modules(bundle).items()}


def free_gpu_bytes(device: torch.device) -> int:
    if device.type != "cuda":
        return 0
    free, _total = torch.cuda.mem_get_info(device)
    return free


def bytes_on_device(bundle: LTX2Bundle, device: torch.device) -> int:
    if device.type != "cuda":
        return 0
    return sum(module_bytes(module, device_type="cuda") for module in _bundle_modules(bundle).values())


def place_bundle(
    bundle: LTX2Bundle,
    offload: str,
    device: torch.device,
    *,
    recipe: str = "two-stage",
    request: RequestSize = DEFAULT_PLAN_REQUEST,
    decode_chunk_frames: int | None = DEFAULT_DECODE_CHUNK_FRAMES,
) -> OffloadPlan:
    """Choose the offload mode (``auto`` from free VRAM and what ``request`` needs under ``recipe``) and
    apply it; raises InsufficientGpuMemory."""
    sizes = component_bytes(bundle)
    # Weights already on the GPU (a bundle built there, like scripts/bench_gpu.py's random 19B) are part of
    # what the plan places, not a cost on top of it: count their memory as free.
    free = free_gpu_bytes(device) + bytes_on_device(bundle, device)
    budget = bundle_activation_budget(bundle, recipe, request, decode_chunk_frames)
    plan = plan_offload(
        offload, on_cuda=device.type == "cuda", free_bytes=free, component_bytes=sizes, activations=budget
    )
    log.info("offload %s (%s); weights %.1f GiB in all", plan.mode, plan.reason, sum(sizes.values()) / GIB)
    apply_offload(bundle, plan, device)
    return plan


def bundle_activation_budget(
    bundle: LTX2Bundle,
    recipe: str,
    request: RequestSize = DEFAULT_PLAN_REQUEST,
    decode_chunk_frames: int | None = DEFAULT_DECODE_CHUNK_FRAMES,
) -> ActivationBudget:
    """activation_budget for this bundle's transformer, dtype, stage-2 LoRA mode and fp8 mode."""
    from .fp8 import Fp8Linear

    transformer = bundle.pipe.transformer
    fp8_compute = any(isinstance(m, Fp8Linear) and m.compute for m in transformer.modules())
    return activation_budget(
        dict(transformer.config),
        request,
        recipe=recipe,
        dtype_bytes=bundle.pipe.vae.dtype.itemsize,
        lora_adapter=bundle.distilled_adapter is not None,
        fp8_compute=fp8_compute,
        decode_chunk_frames=decode_chunk_frames,
    )
