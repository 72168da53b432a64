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
conversion (LTX-2.0's layout: one shared projection).
"""

from __future__ import annotations

from typing import Mapping, TypeVar

T = TypeVar("T")

CHECKPOINT_TRANSFORMER_PREFIX = "model.diffusion_model."

# Checkpoint prefix -> LTX2TextConnectors prefix, for every tensor ltx-core's embeddings processor reads
# (EMBEDDINGS_PROCESSOR_KEY_OPS in ltx_core/text_encoders/gemma/encoders/encoder_configurator.py).
CONNECTOR_PREFIXES: dict[str, str] = {
    "text_embedding_projection.aggregate_embed.": "text_proj_in.",
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


__all__ = [
    "CHECKPOINT_TRANSFORMER_PREFIX",
    "CONNECTOR_PREFIXES",
    "connector_key",
    "convert_connectors_to_diffusers",
    "is_connector_key",
]
