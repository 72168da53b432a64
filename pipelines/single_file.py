"""LTX-2 models from Lightricks' single-file checkpoints (the layout LTX-2.3 is published in), into diffusers' classes.

A checkpoint such as ``ltx-2.3-22b-dev.safetensors`` holds every model but the text encoder, each under its own
key prefix in Lightricks' names (pipelines/checkpoint_keys.py), and its config as JSON in the file's metadata
(pipelines/ltx_config.py reads it into diffusers' constructor arguments). Each model is built empty from that
config, its tensors renamed with diffusers' single-file converters (``diffusers.loaders.single_file_utils``)
plus the LTX-2.3 names those converters do not know yet (checkpoint_keys), and loaded strictly: a tensor
that lines up with nothing, or a parameter left without one, is an error, never a silently random weight.

The Gemma 3 text encoder is not in these files: Lightricks' pipelines take it from a separate folder
(``--gemma-root``), as the weights layout here does (pipelines/weights_single_file.py).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import torch

from . import ltx_config
from .checkpoint_keys import (
    AUDIO_VAE_PREFIX,
    CHECKPOINT_TRANSFORMER_PREFIX,
    VIDEO_VAE_PREFIX,
    VOCODER_PREFIX,
    convert_connectors_to_diffusers,
    is_connector_key,
    rename_transformer_keys_for_ltx_2_3,
    rename_video_decoder_keys_beyond_three_upsamplers,
    vocoder_key,
)

log = logging.getLogger("ltx2.single_file")


def convert_transformer(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``model.diffusion_model.*`` tensors (connectors excluded) -> LTX2VideoTransformer3DModel's names."""
    from diffusers.loaders.single_file_utils import convert_ltx2_transformer_to_diffusers

    return rename_transformer_keys_for_ltx_2_3(convert_ltx2_transformer_to_diffusers(dict(state)))


def convert_video_vae(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``vae.*`` tensors -> AutoencoderKLLTX2Video's names."""
    from diffusers.loaders.single_file_utils import convert_ltx2_vae_to_diffusers

    return rename_video_decoder_keys_beyond_three_upsamplers(convert_ltx2_vae_to_diffusers(dict(state)))


def convert_audio_vae(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``audio_vae.*`` tensors -> AutoencoderKLLTX2Audio's names."""
    from diffusers.loaders.single_file_utils import convert_ltx2_audio_vae_to_diffusers

    return convert_ltx2_audio_vae_to_diffusers(dict(state))


def convert_vocoder(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``vocoder.*`` tensors -> LTX2Vocoder's or LTX2VocoderWithBWE's names."""
    return {vocoder_key(key): value for key, value in state.items()}


def _load_strict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], what: str) -> torch.nn.Module:
    # Buffers that are computed, not stored (the vocoders' resampling filters), keep their built values.
    computed = {name for name, _ in model.named_buffers() if name.endswith(".filter")}
    missing, unexpected = model.load_state_dict(dict(state), strict=False, assign=True)
    missing = [name for name in missing if name not in computed]
    if missing or unexpected:
        raise ValueError(
            f"{what}: the checkpoint does not fit its config: missing {sorted(missing)[:6]}, "
            f"unexpected {sorted(unexpected)[:6]}"
        )
    return model.eval()


def _built(cls, kwargs: Mapping[str, Any], state: Mapping[str, torch.Tensor], what: str, dtype: torch.dtype):
    """``cls(**kwargs)`` built without allocating weights, then given the checkpoint's tensors."""
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        model = cls(**kwargs)
    model = _load_strict(model, state, what)
    # Cast only what differs (diffusers warns on every cast): the computed filters are built in float32.
    return model if all(p.dtype == dtype for p in model.parameters()) else model.to(dtype)


def build_components(
    checkpoint: Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
    *,
    text_hidden: int,
    text_layers: int,
    dtype: torch.dtype = torch.float32,
    parts: tuple[str, ...] = ("transformer", "connectors", "vae", "audio_vae", "vocoder"),
) -> dict[str, torch.nn.Module]:
    """The diffusers models of a single-file checkpoint (a state dict in Lightricks' key names) and its config,
    for a text encoder ``text_hidden`` wide with ``text_layers`` layers."""
    from diffusers import AutoencoderKLLTX2Audio, AutoencoderKLLTX2Video, LTX2VideoTransformer3DModel
    from diffusers.pipelines.ltx2 import LTX2TextConnectors
    from diffusers.pipelines.ltx2 import vocoder as vocoders

    def prefixed(prefix: str) -> dict[str, torch.Tensor]:
        return {key: value for key, value in checkpoint.items() if key.startswith(prefix)}

    built: dict[str, torch.nn.Module] = {}
    if "transformer" in parts:
        state = {k: v for k, v in prefixed(CHECKPOINT_TRANSFORMER_PREFIX).items() if not is_connector_key(k)}
        built["transformer"] = _built(
            LTX2VideoTransformer3DModel, ltx_config.transformer_kwargs(config), convert_transformer(state),
            "transformer", dtype,
        )
    if "connectors" in parts:
        built["connectors"] = _built(
            LTX2TextConnectors, ltx_config.connectors_kwargs(config, text_hidden, text_layers),
            convert_connectors_to_diffusers(checkpoint), "text connectors", dtype,
        )
    if "vae" in parts:
        built["vae"] = _built(
            AutoencoderKLLTX2Video, ltx_config.video_vae_kwargs(config), convert_video_vae(prefixed(VIDEO_VAE_PREFIX)),
            "video VAE", dtype,
        )
    if "audio_vae" in parts:
        built["audio_vae"] = _built(
            AutoencoderKLLTX2Audio, ltx_config.audio_vae_kwargs(config), convert_audio_vae(prefixed(AUDIO_VAE_PREFIX)),
            "audio VAE", dtype,
        )
    if "vocoder" in parts:
        class_name, kwargs = ltx_config.vocoder_kwargs(config)
        built["vocoder"] = _built(
            getattr(vocoders, class_name), kwargs, convert_vocoder(prefixed(VOCODER_PREFIX)), "vocoder", dtype
        )
    return built


def build_latent_upsampler(state: Mapping[str, torch.Tensor], config: Mapping[str, Any], dtype: torch.dtype):
    """The spatial upscaler file (its own config in its metadata, tensors already in diffusers' names)."""
    from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel

    kwargs = ltx_config.latent_upsampler_kwargs(config)
    return _built(LTX2LatentUpsamplerModel, kwargs, state, "latent upsampler", dtype)


def read_checkpoint(file: str | Path, dtype: torch.dtype, prefixes: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file (those under ``prefixes``, or all), fp8 ones dequantised with their
    scales (pipelines/loader.py _read_dequantized), in ``dtype``."""
    from safetensors import safe_open

    from .loader import _read_dequantized

    with safe_open(str(file), framework="pt") as handle:
        names = [name for name in handle.keys() if not prefixes or name.startswith(prefixes)]
        state, _stored_in_fp8 = _read_dequantized(handle, names, dtype)
    return state


def checkpoint_config(file: str | Path) -> dict[str, Any]:
    """The model config a single-file checkpoint carries in its metadata."""
    from .generations import safetensors_metadata

    return ltx_config.config_from_metadata(safetensors_metadata(file))


def load_single_file_bundle(
    weights_dir: str | Path, dtype: torch.dtype, *, recipe: str = "two-stage", model: str = "ltx-2.3-22b"
):
    """The LTX2Bundle of a single-file weights folder (pipelines/weights_single_file.py describes the layout).

    The distilled recipe runs Lightricks' distilled checkpoint when the folder has it (both stages, no LoRA,
    as their DistilledPipeline does); every other recipe runs the dev checkpoint, with the distilled LoRA
    switched on for stage 2.
    """
    from diffusers import FlowMatchEulerDiscreteScheduler, LTX2ImageToVideoPipeline
    from transformers import AutoTokenizer, Gemma3ForConditionalGeneration

    from .loader import DISTILLED_ADAPTER, _finish_bundle
    from .weights_single_file import SingleFileLayout

    layout = SingleFileLayout.of(weights_dir, model)
    layout.require_complete(recipe)
    distilled = layout.distilled_checkpoint() if recipe == "distilled" else None
    checkpoint_file = distilled or layout.dev_checkpoint()
    assert checkpoint_file is not None  # require_complete names it otherwise
    config = checkpoint_config(checkpoint_file)
    text_encoder = Gemma3ForConditionalGeneration.from_pretrained(
        layout.text_encoder_dir, dtype=dtype, local_files_only=True
    ).eval()
    tokenizer = AutoTokenizer.from_pretrained(layout.text_encoder_dir, local_files_only=True)
    text_config = text_encoder.config.text_config
    components = build_components(
        read_checkpoint(checkpoint_file, dtype),
        config,
        text_hidden=text_config.hidden_size,
        text_layers=text_config.num_hidden_layers,
        dtype=dtype,
    )
    pipe: Any = LTX2ImageToVideoPipeline(  # diffusers' pipelines are not statically typed
        # Never stepped (the recipes compute their own sigmas, pipelines/schedule.py); the pipeline needs one.
        scheduler=FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, shift_terminal=0.1),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        **components,
    )
    upsampler = None
    upsampler_file = layout.latent_upsampler()
    if upsampler_file is not None:  # one-stage runs without it
        upsampler = build_latent_upsampler(
            read_checkpoint(upsampler_file, dtype), checkpoint_config(upsampler_file), dtype
        )
    lora_file = layout.distilled_lora()
    if distilled is not None:
        bundle = _finish_bundle(pipe, upsampler, adapter=None)
        bundle.distilled_transformer = pipe.transformer
        bundle.distilled_source = "checkpoint"
        bundle.distilled_checkpoint_file = distilled.name
        bundle.distilled_connectors = True
    elif lora_file is not None:
        pipe.load_lora_weights(str(lora_file.parent), weight_name=lora_file.name, adapter_name=DISTILLED_ADAPTER)
        bundle = _finish_bundle(pipe, upsampler)
        bundle.distilled_checkpoint_file = layout.release.distilled[0]  # what --recipe distilled looked for
    else:  # one-stage without the LoRA: no stage 2 to run
        bundle = _finish_bundle(pipe, upsampler, adapter=None)
    log.info("loaded %s (model_version %s)", checkpoint_file.name, layout.model_version(checkpoint_file) or "unknown")
    return bundle


__all__ = [
    "build_components",
    "build_latent_upsampler",
    "checkpoint_config",
    "convert_audio_vae",
    "convert_transformer",
    "convert_video_vae",
    "convert_vocoder",
    "load_single_file_bundle",
    "read_checkpoint",
]
