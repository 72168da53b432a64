"""Tensor names of Lightricks' single-file LTX-2 checkpoints (``ltx-2-19b-dev-fp8.safetensors``,
``ltx-2-19b-distilled.safetensors`` / ``-fp8``) and where diffusers keeps each tensor.

These files bundle every part of the model under its own prefix, in Lightricks' own names:

- ``model.diffusion_model.*``: the audio/video transformer (diffusers' single-file converter,
  ``convert_ltx2_transformer_to_diffusers``, renames it), and, under the same prefix, the two text
  connectors ``model.diffusion_model.video_embeddings_connector.*`` and
  ``model.diffusion_model.audio_embeddings_connector.*``, which that converter drops;
- ``text_embedding_projection.aggregate_embed.*``: the projection of the stacked Gemma hidden states;
- ``vae.*``, ``audio_vae.*``, ``vocoder.*``: not read from these files here.

The text path of Lightricks' pipelines (ltx-core's embeddings processor) is built from the second and
third groups of the checkpoint it runs. diffusers keeps the same three parts in one model,
``LTX2TextConnectors`` (``text_proj_in``, ``video_connector``, ``audio_connector``), and its
single-file loader has no converter for them; :func:`convert_connectors_to_diffusers` is that
conversion: LTX-2.0's one shared projection (``aggregate_embed``) or LTX-2.3's two per-modality ones
(``video_aggregate_embed``, ``audio_aggregate_embed``: ltx-core's FeatureExtractorV2).

diffusers 0.42.1's single-file converters predate LTX-2.3, whose checkpoints add three kinds of names they
leave unconverted; the renames below complete them (the names are those of ltx-core 1.0.0's modules on one
side and diffusers 0.42.1's on the other, and the parity suite loads them strictly):

- the transformer's prompt AdaLN (``prompt_adaln_single``, ``audio_prompt_adaln_single``), which diffusers
  calls ``prompt_adaln`` / ``audio_prompt_adaln`` (its LoRA converter already renames them so);
- a video decoder with four upsamplers (the rebuilt 2.3 VAE): the converter places ltx-core's decoder blocks
  0-6 (mid block, then upsampler and resnets of three up blocks); blocks 7 and 8 are the fourth's;
- the vocoder, which has no single-file converter at all: ``ups``/``resblocks``/``conv_pre``/``conv_post``
  are diffusers' ``upsamplers``/``resnets``/``conv_in``/``conv_out``, and in LTX-2.3's bandwidth-extending
  vocoder ``act_post`` is ``act_out`` and an anti-aliasing ``downsample.lowpass`` is ``downsample``.
"""

from __future__ import annotations

from typing import Mapping, TypeVar

T = TypeVar("T")

CHECKPOINT_TRANSFORMER_PREFIX = "model.diffusion_model."
VIDEO_VAE_PREFIX = "vae."
AUDIO_VAE_PREFIX = "audio_vae."
VOCODER_PREFIX = "vocoder."

# Checkpoint prefix -> LTX2TextConnectors prefix, for every tensor ltx-core's embeddings processor reads
# (EMBEDDINGS_PROCESSOR_KEY_OPS in ltx_core/text_encoders/gemma/encoders/encoder_configurator.py).
CONNECTOR_PREFIXES: dict[str, str] = {
    "text_embedding_projection.aggregate_embed.": "text_proj_in.",
    "text_embedding_projection.video_aggregate_embed.": "video_text_proj_in.",
    "text_embedding_projection.audio_aggregate_embed.": "audio_text_proj_in.",
    CHECKPOINT_TRANSFORMER_PREFIX + "video_embeddings_connector.": "video_connector.",
    CHECKPOINT_TRANSFORMER_PREFIX + "audio_embeddings_connector.": "audio_connector.",
}

# Module names inside the connectors that diffusers spells differently (whole dotted segments).
_CONNECTOR_SEGMENTS: dict[str, str] = {
    "transformer_1d_blocks": "transformer_blocks",
    "q_norm": "norm_q",
    "k_norm": "norm_k",
}


def is_connector_key(key: str) -> bool:
    """Whether a checkpoint tensor belongs to the text connectors (fp8 ``*_scale`` companions included)."""
    return key.startswith(tuple(CONNECTOR_PREFIXES))


def connector_key(key: str) -> str:
    """The LTX2TextConnectors state-dict key of one checkpoint connector tensor (KeyError for any other)."""
    for prefix, target in CONNECTOR_PREFIXES.items():
        if key.startswith(prefix):
            segments = key[len(prefix) :].split(".")
            return target + ".".join(_CONNECTOR_SEGMENTS.get(segment, segment) for segment in segments)
    raise KeyError(f"{key}: not a text connector tensor (prefixes {', '.join(CONNECTOR_PREFIXES)})")


def convert_connectors_to_diffusers(state: Mapping[str, T]) -> dict[str, T]:
    """The text connectors' tensors of a checkpoint state dict, renamed for diffusers' LTX2TextConnectors;
    every other tensor (transformer, VAEs, vocoder) is left out."""
    return {connector_key(key): value for key, value in state.items() if is_connector_key(key)}


# diffusers' names of the LTX-2.3 transformer modules its single-file converter leaves as they are.
_TRANSFORMER_2_3_PREFIXES = {
    "prompt_adaln_single.": "prompt_adaln.",
    "audio_prompt_adaln_single.": "audio_prompt_adaln.",
}


def rename_transformer_keys_for_ltx_2_3(state: Mapping[str, T]) -> dict[str, T]:
    """A transformer state dict after diffusers' converter, with LTX-2.3's prompt AdaLN renamed."""
    renamed = {}
    for key, value in state.items():
        for old, new in _TRANSFORMER_2_3_PREFIXES.items():
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        renamed[key] = value
    return renamed


def rename_video_decoder_keys_beyond_three_upsamplers(state: Mapping[str, T]) -> dict[str, T]:
    """A video VAE state dict after diffusers' converter, with ltx-core decoder blocks 7 and up placed: block
    2i+1 is up block i's upsampler, block 2i+2 its resnets (the converter itself places blocks 0-6 so)."""
    renamed = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[:2] == ["decoder", "up_blocks"] and int(parts[2]) >= 7:
            block = int(parts[2])
            target = f"up_blocks.{(block - 1) // 2}" + (".upsamplers.0" if block % 2 else "")
            key = ".".join(["decoder", target, *parts[3:]])
        renamed[key] = value
    return renamed


# Whole dotted segments of the vocoder's names, Lightricks' -> diffusers'.
_VOCODER_SEGMENTS = {"ups": "upsamplers", "resblocks": "resnets", "conv_pre": "conv_in", "conv_post": "conv_out",
                     "act_post": "act_out"}  # fmt: skip


def vocoder_key(key: str) -> str:
    """The LTX2Vocoder / LTX2VocoderWithBWE key of one checkpoint ``vocoder.*`` tensor (the prefix is removed
    once: LTX-2.3's inner vocoder is ``vocoder.vocoder.*``)."""
    if not key.startswith(VOCODER_PREFIX):
        raise KeyError(f"{key}: not a vocoder tensor")
    key = key[len(VOCODER_PREFIX) :].replace("downsample.lowpass.", "downsample.")
    return ".".join(_VOCODER_SEGMENTS.get(segment, segment) for segment in key.split("."))


__all__ = [
    "AUDIO_VAE_PREFIX",
    "CHECKPOINT_TRANSFORMER_PREFIX",
    "CONNECTOR_PREFIXES",
    "connector_key",
    "convert_connectors_to_diffusers",
    "is_connector_key",
    "rename_transformer_keys_for_ltx_2_3",
    "rename_video_decoder_keys_beyond_three_upsamplers",
    "VIDEO_VAE_PREFIX",
    "VOCODER_PREFIX",
    "vocoder_key",
]
