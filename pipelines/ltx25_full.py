"""The full-size LTX-2.5 architecture with random weights, for scripts/bench_gpu.py (no download).

Where each config comes from:

- transformer: LTX-2.3's 22B transformer (pipelines/ltx23_22b.py: 48 blocks, 32 x 128 video and 32 x 64 audio
  attention, gated attention, prompt AdaLN, no caption projection) with the three switches diffusers 0.42.1's
  ``LTX2VideoTransformer3DModel`` documents as LTX-2.5's: no bias in the video feed-forward (``ff_bias``), the
  prompt's cross-attention modulation from a fixed per-layer table instead of a timestep MLP
  (``use_prompt_adaln_single=False``) and the generated-keyframe embedding; pipelines/tiny25.py sets the same
  switches at test-model widths. 18.9B parameters.
- text encoder: Gemma 4 12B (google/gemma-4-12B-it config.json, the checkpoint transformers 5's Gemma 4 config
  classes are documented against): 48 layers of width 3840, sliding and full attention 5:1, keys equal to
  values on the full-attention layers; its vision and audio embedders at transformers' defaults.
- text connectors: LTX-2.3's (8 layers per modality, per-modality projections of the 49 stacked hidden
  states): Gemma 4 12B has Gemma 3 12B's width and depth, so the same shapes.
- diffusion decoder: diffusers' ``LTX2VideoDiffusionDecoderModel`` defaults (0.42B: the 7-, 5- and 11-wide
  neighbourhoods pipelines/ltx25.py's size floor is derived from).
- video VAE, audio VAE, vocoder: LTX-2.3's. LTX-2.5 keeps the video VAE's latent space (x32, x8) and only
  encodes the conditioning image with it (one frame: milliseconds); the layout of its encoder blocks is not in
  diffusers 0.42.1, so the 2.3 VAE stands in, at the same compression and about the same size.

No latent upsampler nor stage-2 LoRA: LTX-2.5 runs one stage (pipelines/generations.py). Building, placing and
wrapping follow pipelines/ltx2_19b.py, so the generations are timed alike.
"""

from __future__ import annotations

import importlib
import time
from typing import Any

import torch

from . import ltx2_19b, ltx23_22b

VERSION = "2.5"

TRANSFORMER_CONFIG = dict(
    ltx23_22b.TRANSFORMER_CONFIG,
    ff_bias=False,
    use_prompt_adaln_single=False,
    use_keyframes_abs_pos_embedding=True,
)

CONNECTORS_CONFIG = dict(ltx23_22b.CONNECTORS_CONFIG)

# LTX2VideoDiffusionDecoderModel's defaults, spelled out so a change of diffusers' defaults shows up here.
DIFFUSION_DECODER_CONFIG = dict(
    out_channels=3,
    latent_channels=128,
    patch_size=4,
    decoder_head_dim=64,
    decoder_stage_channels=(2048, 1024, 512, 512, 256),
    decoder_stage_depths=(4, 6, 4, 2, 8),
    decoder_stage_kernels=((3, 7, 7), (3, 7, 7), (3, 5, 5), (3, 5, 5)),
    decoder_upsample_strides=((1, 2, 2), (2, 1, 1), (2, 2, 2), (2, 2, 2)),
    decoder_upsample_channel_reductions=(2, 2, 1, 2),
    decoder_stage5_kernel=(11, 11, 11),
    decoder_t_emb_dim=384,
    spatial_compression_ratio=32,
    temporal_compression_ratio=8,
)

# google/gemma-4-12B-it config.json, text_config. RoPE at transformers' defaults for Gemma 4 (the same values).
GEMMA4_12B_TEXT_CONFIG = dict(
    vocab_size=262144,
    hidden_size=3840,
    intermediate_size=15360,
    num_hidden_layers=48,
    num_attention_heads=16,
    num_key_value_heads=8,
    head_dim=256,
    global_head_dim=512,
    num_global_key_value_heads=1,
    attention_k_eq_v=True,
    sliding_window=1024,
    final_logit_softcapping=30.0,
    max_position_embeddings=262144,
)

# Published sizes, in parameters: the transformer (docs/generations.md) and the diffusion decoder (0.8 GB in bf16).
PUBLISHED_PARAMS = {"transformer": 18.9e9, "diffusion_decoder": 0.42e9, "text_encoder": 12e9}

_DIFFUSERS_COMPONENTS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "transformer": ("diffusers", "LTX2VideoTransformer3DModel", TRANSFORMER_CONFIG),
    "connectors": ("diffusers.pipelines.ltx2", "LTX2TextConnectors", CONNECTORS_CONFIG),
    "vae": ("diffusers", "AutoencoderKLLTX2Video", ltx23_22b.VIDEO_VAE_CONFIG),
    "audio_vae": ("diffusers", "AutoencoderKLLTX2Audio", ltx23_22b.AUDIO_VAE_CONFIG),
    "vocoder": ("diffusers.pipelines.ltx2.vocoder", "LTX2VocoderWithBWE", ltx23_22b.VOCODER_CONFIG),
    "diffusion_decoder": ("diffusers", "LTX2VideoDiffusionDecoderModel", DIFFUSION_DECODER_CONFIG),
}
COMPONENTS = (*_DIFFUSERS_COMPONENTS, "text_encoder")
_SEED = 25


def build_text_encoder(tokenizer=None):
    from transformers import Gemma4UnifiedConfig, Gemma4UnifiedForConditionalGeneration, Gemma4UnifiedTextConfig

    special = {}
    if tokenizer is not None:
        special = dict(
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    text_config = Gemma4UnifiedTextConfig(**GEMMA4_12B_TEXT_CONFIG, **special)
    return Gemma4UnifiedForConditionalGeneration(Gemma4UnifiedConfig(text_config=text_config))


def build_component(name: str, device="meta", dtype: torch.dtype = torch.bfloat16):
    """One full-size component with random weights on ``device`` (``meta``: shapes only, no memory)."""
    with ltx2_19b._built_as(device, dtype):
        return _build(name).eval()


def _build(name: str, tokenizer=None):
    if name == "text_encoder":
        return build_text_encoder(tokenizer)
    module, class_name, config = _DIFFUSERS_COMPONENTS[name]
    return getattr(importlib.import_module(module), class_name)(**config)


def build_random_ltx25_bundle(device, dtype: torch.dtype = torch.bfloat16, *, timings: dict | None = None):
    """LTX-2.5 with random weights built on ``device``, wrapped as its real weights are (pipelines/ltx25.py
    LTX25Bundle: the image-to-video pipeline plus the diffusion decoder). ``timings``: seconds per part."""
    from diffusers import LTX2ImageToVideoPipeline

    from .loader import _finish_bundle
    from .ltx25 import LTX25Bundle
    from .tiny import _build_scheduler

    timings = {} if timings is None else timings
    torch.manual_seed(_SEED)
    if torch.device(device).type == "cuda":
        torch.cuda.manual_seed_all(_SEED)
    parts = {}
    tokenizer = ltx2_19b.build_tokenizer()
    for name in COMPONENTS:
        start = time.perf_counter()
        with ltx2_19b._built_as(device, dtype):
            parts[name] = _build(name, tokenizer).eval()
        ltx2_19b._synchronize(device)
        timings[name] = time.perf_counter() - start
    decoder = parts.pop("diffusion_decoder")
    pipe: Any = LTX2ImageToVideoPipeline(scheduler=_build_scheduler(), tokenizer=tokenizer, **parts)
    base = _finish_bundle(pipe, None, adapter=None)
    return LTX25Bundle.from_bundle(base, diffusion_decoder=decoder)


__all__ = [
    "COMPONENTS",
    "CONNECTORS_CONFIG",
    "DIFFUSION_DECODER_CONFIG",
    "GEMMA4_12B_TEXT_CONFIG",
    "PUBLISHED_PARAMS",
    "TRANSFORMER_CONFIG",
    "build_component",
    "build_random_ltx25_bundle",
]
