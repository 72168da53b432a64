"""A tiny, randomly initialised LTX-2.5 built entirely in code (``tiny-2.5``): no download, no files.

The same diffusers/transformers classes as LTX-2.5 (Lightricks/LTX-2.5-Diffusers), with the switches that make
a model 2.5 and not 2.0 kept, only the widths shrunk to run on a 2-core CPU:

- text encoder: Gemma 4 ("gemma4_unified"; keys equal values on its full-attention layers, a wider head there,
  sliding and full layers alternating) instead of Gemma 3;
- connectors: one projection per modality from the stacked Gemma layers, gated attention, learnable registers;
- transformer: gated attention, per-prompt cross-attention modulation from a fixed per-layer table
  (``use_prompt_adaln_single=False``), no prompt projection inside the transformer, no feed-forward bias on
  the video stream, a keyframe embedding, STG-capable attention;
- vocoder: the bandwidth-extending one (16 kHz stage, then 48 kHz);
- decoder: the diffusion decoder (neighbourhood-attention upsampling, then one x0 step from noise), with the
  real x32 spatial / x8 temporal mapping of latents to pixels;
- duration head: predicts a clip length from the prompt (the server never asks it: requests carry num_frames).

The video VAE is the tiny LTX-2.0 one (2.5 keeps the conv VAE's latent space and uses its encoder for the
conditioning image). Weights come from fixed seeds, so two builds are bit-identical.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .tiny import (
    AUDIO_LATENT_CHANNELS,
    AUDIO_MEL_BINS,
    AUDIO_OUTPUT_CHANNELS,
    VIDEO_LATENT_CHANNELS,
    _build_audio_vae,
    _build_scheduler,
    _build_tokenizer,
    _build_video_vae,
)

_SEED_TEXT_ENCODER = 20
_SEED_CONNECTORS = 21
_SEED_TRANSFORMER = 22
_SEED_VOCODER = 25
_SEED_DIFFUSION_DECODER = 26
_SEED_DURATION_HEAD = 27

TEXT_HIDDEN = 16
TEXT_LAYERS = 2
VIDEO_INNER = 12  # transformer video width = video connector width = video cross-attention width
AUDIO_INNER = 8
CONNECTOR_REGISTERS = 4


def _build_text_encoder(tokenizer):
    from transformers import Gemma4UnifiedConfig, Gemma4UnifiedForConditionalGeneration, Gemma4UnifiedTextConfig

    text_config = Gemma4UnifiedTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=TEXT_HIDDEN,
        intermediate_size=32,
        num_hidden_layers=TEXT_LAYERS,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        global_head_dim=16,  # full-attention layers use a wider head, as in Gemma 4
        num_global_key_value_heads=1,
        attention_k_eq_v=True,
        layer_types=["sliding_attention", "full_attention"],
        sliding_window=64,
        max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(_SEED_TEXT_ENCODER)
    return Gemma4UnifiedForConditionalGeneration(Gemma4UnifiedConfig(text_config=text_config)).eval()


def _build_connectors():
    from diffusers.pipelines.ltx2 import LTX2TextConnectors

    torch.manual_seed(_SEED_CONNECTORS)
    return LTX2TextConnectors(
        caption_channels=TEXT_HIDDEN,
        text_proj_in_factor=TEXT_LAYERS + 1,  # every hidden state, embeddings included, is stacked
        video_connector_num_attention_heads=1,
        video_connector_attention_head_dim=VIDEO_INNER,
        video_connector_num_layers=1,
        video_connector_num_learnable_registers=CONNECTOR_REGISTERS,
        video_gated_attn=True,
        audio_connector_num_attention_heads=1,
        audio_connector_attention_head_dim=AUDIO_INNER,
        audio_connector_num_layers=1,
        audio_connector_num_learnable_registers=CONNECTOR_REGISTERS,
        audio_gated_attn=True,
        connector_rope_base_seq_len=32,
        rope_double_precision=False,
        rope_type="split",
        per_modality_projections=True,
        video_hidden_dim=VIDEO_INNER,
        audio_hidden_dim=AUDIO_INNER,
        proj_bias=True,
    ).eval()


TRANSFORMER_LAYERS = 2


def _build_transformer():
    from diffusers import LTX2VideoTransformer3DModel

    torch.manual_seed(_SEED_TRANSFORMER)
    return LTX2VideoTransformer3DModel(
        in_channels=VIDEO_LATENT_CHANNELS,
        out_channels=VIDEO_LATENT_CHANNELS,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=1,
        attention_head_dim=VIDEO_INNER,
        cross_attention_dim=VIDEO_INNER,
        gated_attn=True,
        cross_attn_mod=True,
        audio_in_channels=AUDIO_LATENT_CHANNELS * (AUDIO_MEL_BINS // 4),
        audio_out_channels=AUDIO_LATENT_CHANNELS * (AUDIO_MEL_BINS // 4),
        audio_num_attention_heads=1,
        audio_attention_head_dim=AUDIO_INNER,
        audio_cross_attention_dim=AUDIO_INNER,
        audio_gated_attn=True,
        audio_cross_attn_mod=True,
        num_layers=TRANSFORMER_LAYERS,  # two, so STG can perturb one block and leave the other
        caption_channels=TEXT_HIDDEN,
        rope_double_precision=False,
        rope_type="split",
        use_prompt_embeddings=False,
        perturbed_attn=True,
        ff_bias=False,
        use_prompt_adaln_single=False,
        use_keyframes_abs_pos_embedding=True,
    ).eval()


def _build_vocoder():
    from diffusers.pipelines.ltx2.vocoder import LTX2VocoderWithBWE

    torch.manual_seed(_SEED_VOCODER)
    mel_in = AUDIO_OUTPUT_CHANNELS * AUDIO_MEL_BINS
    vocoder = LTX2VocoderWithBWE(
        in_channels=mel_in,
        hidden_channels=32,
        upsample_kernel_sizes=[20, 8, 8],
        upsample_factors=[10, 4, 4],  # 100 mel frames/s -> 16 kHz
        resnet_kernel_sizes=[3],
        resnet_dilations=[[1]],
        bwe_in_channels=mel_in,
        bwe_hidden_channels=32,
        bwe_upsample_kernel_sizes=[12, 11, 16],
        bwe_upsample_factors=[6, 5, 8],  # 200 mel frames/s (hop 80 at 16 kHz) -> 48 kHz
        bwe_resnet_kernel_sizes=[3],
        bwe_resnet_dilations=[[1]],
        filter_length=128,  # >= hop: the causal STFT then gives one frame per hop
        hop_length=80,
        window_length=128,
        num_mel_channels=AUDIO_MEL_BINS,
        input_sampling_rate=16000,
        output_sampling_rate=48000,
    ).eval()
    # The STFT bases and mel filterbank are checkpoint buffers (zeros until loaded): random ones keep the
    # bandwidth-extension branch from seeing a constant spectrogram.
    generator = torch.Generator().manual_seed(_SEED_VOCODER)
    with torch.no_grad():
        for name, buffer in vocoder.named_buffers():
            if name.endswith(("forward_basis", "inverse_basis", "mel_basis")):
                buffer.copy_(torch.rand(buffer.shape, generator=generator) * 0.1)
    return vocoder


# The diffusion decoder's shape: the real decoder's strides and stage count (so latents map to pixels x32 / x8),
# narrow widths, and 3-wide neighbourhoods (the real ones are 7, 5 and 11 wide).
TINY_DECODER_KERNEL = (3, 3, 3)


def _build_diffusion_decoder():
    from diffusers import LTX2VideoDiffusionDecoderModel

    torch.manual_seed(_SEED_DIFFUSION_DECODER)
    decoder = LTX2VideoDiffusionDecoderModel(
        out_channels=3,
        latent_channels=VIDEO_LATENT_CHANNELS,
        patch_size=4,
        decoder_head_dim=8,
        decoder_stage_channels=(16, 8, 8, 8, 8),
        decoder_stage_depths=(1, 1, 1, 1, 1),
        decoder_stage_kernels=(TINY_DECODER_KERNEL,) * 4,
        decoder_upsample_strides=((1, 2, 2), (2, 1, 1), (2, 2, 2), (2, 2, 2)),
        decoder_upsample_channel_reductions=(2, 1, 1, 1),
        decoder_stage5_kernel=TINY_DECODER_KERNEL,
        decoder_t_emb_dim=16,
        spatial_compression_ratio=32,
        temporal_compression_ratio=8,
    ).eval()
    return decoder


def _build_duration_head():
    from diffusers.pipelines.ltx2.duration_head import LTX2DurationHead

    torch.manual_seed(_SEED_DURATION_HEAD)
    return LTX2DurationHead(
        video_cross_attention_dim=VIDEO_INNER,
        audio_cross_attention_dim=AUDIO_INNER,
        pooler_hidden_dim=8,
        num_pooler_heads=2,
        mlp_hidden_dim=8,
    ).eval()


def build_tiny25_components() -> dict:
    """Every component of the tiny LTX-2.5, by the names diffusers' LTX-2.5 pipelines give them (CPU, float32)."""
    tokenizer = _build_tokenizer()
    vae = _build_video_vae()
    decoder = _build_diffusion_decoder()
    # The decoder carries the latent statistics too (a decode-only setup needs no VAE); keep them the VAE's.
    decoder.latents_mean.copy_(vae.latents_mean)
    decoder.latents_std.copy_(vae.latents_std)
    return {
        "scheduler": _build_scheduler(),
        "vae": vae,
        "audio_vae": _build_audio_vae(),
        "text_encoder": _build_text_encoder(tokenizer),
        "tokenizer": tokenizer,
        "connectors": _build_connectors(),
        "transformer": _build_transformer(),
        "vocoder": _build_vocoder(),
        "diffusion_decoder": decoder,
        "duration_head": _build_duration_head(),
    }


# What the server gives LTX2ImageToVideoPipeline (the diffusion decoder is run outside it; the duration
# head is never asked, as in pipelines/ltx25.py load_ltx25_bundle).
_PIPE_COMPONENTS = (
    "scheduler",
    "vae",
    "audio_vae",
    "text_encoder",
    "tokenizer",
    "connectors",
    "transformer",
    "vocoder",
)


def image_to_video_pipeline(components: dict):
    """diffusers' LTX2ImageToVideoPipeline holding ``components`` (text path, transformer, VAEs, vocoder)."""
    from diffusers import LTX2ImageToVideoPipeline

    pipe: Any = LTX2ImageToVideoPipeline(**{name: components[name] for name in _PIPE_COMPONENTS})
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_tiny25_bundle():
    """The tiny LTX-2.5 as an LTX25Bundle (one-stage: LTX-2.5 has no latent upsampler nor stage-2 LoRA)."""
    from .loader import _finish_bundle
    from .ltx25 import LTX25Bundle

    components = build_tiny25_components()
    base = _finish_bundle(image_to_video_pipeline(components), None, adapter=None)
    return LTX25Bundle.from_bundle(base, diffusion_decoder=components["diffusion_decoder"])


def save_tiny25_weights(directory: str | Path) -> None:
    """Write the tiny LTX-2.5 to ``directory`` in LTX-2.5's per-component layout, with diffusers' own
    writers (pipelines/ltx25.py write_per_component_layout), so tests load it as the real weights load."""
    from .ltx25 import write_per_component_layout

    write_per_component_layout(build_tiny25_components(), Path(directory))
