"""The full-size LTX-2.3 22B architecture with random weights, for scripts/bench_gpu.py (no download).

Every config value is read off diffusers' ``scripts/convert_ltx2_to_diffusers.py`` for ``--version 2.3``
(huggingface/diffusers main, 2026; the functions named beside each dict) and checked against the constructor
signatures of diffusers 0.42.1, except the main vocoder's final activation: Lightricks' 2.3 vocoder clamps its
16 kHz output (ltx-core ``Vocoder``: ``use_tanh_at_final`` false, ``apply_final_activation`` true), which is
what pipelines/ltx_config.py reads a real checkpoint into ("clamp"; the script writes None: the same cost).
The text encoder is the same Gemma 3 12B as LTX-2.0's, and building, placing and wrapping the bundle is
pipelines/ltx2_19b.py's code, so the two generations are timed alike.
"""

from __future__ import annotations

from typing import Any

import torch

from . import ltx2_19b

VERSION = "2.3"

# get_ltx2_transformer_config("2.3"): 2.0's shape, plus gated attention and the prompt AdaLN in both streams;
# no caption projection (the connectors project Gemma's features per modality).
TRANSFORMER_CONFIG = dict(
    ltx2_19b.TRANSFORMER_CONFIG,
    gated_attn=True,
    cross_attn_mod=True,
    audio_gated_attn=True,
    audio_cross_attn_mod=True,
    use_prompt_embeddings=False,
    perturbed_attn=True,
)

# get_ltx2_connectors_config("2.3"): 8 layers each, each as wide as its stream (32 x 128 video, 32 x 64 audio),
# gated attention, and the per-modality projections of the 49 stacked Gemma hidden states (with biases).
CONNECTORS_CONFIG = dict(
    caption_channels=3840,
    text_proj_in_factor=49,
    video_connector_num_attention_heads=32,
    video_connector_attention_head_dim=128,
    video_connector_num_layers=8,
    video_connector_num_learnable_registers=128,
    video_gated_attn=True,
    audio_connector_num_attention_heads=32,
    audio_connector_attention_head_dim=64,
    audio_connector_num_layers=8,
    audio_connector_num_learnable_registers=128,
    audio_gated_attn=True,
    connector_rope_base_seq_len=4096,
    rope_theta=10000.0,
    rope_double_precision=True,
    causal_temporal_positioning=False,
    rope_type="split",
    per_modality_projections=True,
    video_hidden_dim=4096,
    audio_hidden_dim=2048,
    proj_bias=True,
)

# get_ltx2_video_vae_config("2.3"): the rebuilt VAE; its decoder has four upsamplers (spatio-temporal x2,
# temporal, spatial) and no residual upsampling.
VIDEO_VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=128,
    block_out_channels=(256, 512, 1024, 1024),
    down_block_types=("LTX2VideoDownBlock3D",) * 4,
    decoder_block_out_channels=(256, 512, 512, 1024),
    layers_per_block=(4, 6, 4, 2, 2),
    decoder_layers_per_block=(4, 6, 4, 2, 2),
    spatio_temporal_scaling=(True, True, True, True),
    decoder_spatio_temporal_scaling=(True, True, True, True),
    decoder_inject_noise=(False, False, False, False, False),
    downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
    upsample_type=("spatiotemporal", "spatiotemporal", "temporal", "spatial"),
    upsample_residual=(False, False, False, False),
    upsample_factor=(2, 2, 1, 2),
    timestep_conditioning=False,
    patch_size=4,
    patch_size_t=1,
    resnet_norm_eps=1e-6,
    encoder_causal=True,
    decoder_causal=False,
    encoder_spatial_padding_mode="zeros",
    decoder_spatial_padding_mode="zeros",
    spatial_compression_ratio=32,
    temporal_compression_ratio=8,
)

# get_ltx2_audio_vae_config("2.3"): the same as 2.0's.
AUDIO_VAE_CONFIG = dict(ltx2_19b.AUDIO_VAE_CONFIG)

# get_ltx2_vocoder_config("2.3"): a 16 kHz BigVGAN-style vocoder (AMP blocks, SnakeBeta, anti-aliased), then the
# bandwidth extension: the same kind of generator on the output's 64-bin log-mel, adding the band up to 48 kHz.
VOCODER_CONFIG = dict(
    in_channels=128,
    hidden_channels=1536,
    out_channels=2,
    upsample_kernel_sizes=[11, 4, 4, 4, 4, 4],
    upsample_factors=[5, 2, 2, 2, 2, 2],
    resnet_kernel_sizes=[3, 7, 11],
    resnet_dilations=[[1, 3, 5], [1, 3, 5], [1, 3, 5]],
    act_fn="snakebeta",
    leaky_relu_negative_slope=0.1,
    antialias=True,
    antialias_ratio=2,
    antialias_kernel_size=12,
    final_act_fn="clamp",
    final_bias=False,
    bwe_in_channels=128,
    bwe_hidden_channels=512,
    bwe_out_channels=2,
    bwe_upsample_kernel_sizes=[12, 11, 4, 4, 4],
    bwe_upsample_factors=[6, 5, 2, 2, 2],
    bwe_resnet_kernel_sizes=[3, 7, 11],
    bwe_resnet_dilations=[[1, 3, 5], [1, 3, 5], [1, 3, 5]],
    bwe_act_fn="snakebeta",
    bwe_leaky_relu_negative_slope=0.1,
    bwe_antialias=True,
    bwe_antialias_ratio=2,
    bwe_antialias_kernel_size=12,
    bwe_final_act_fn=None,
    bwe_final_bias=False,
    filter_length=512,
    hop_length=80,
    window_length=512,
    num_mel_channels=64,
    input_sampling_rate=16000,
    output_sampling_rate=48000,
)

# get_ltx2_spatial_latent_upsampler_config("2.3"): 2.0's layout, plain (not rational) 2x resampling.
LATENT_UPSAMPLER_CONFIG = dict(ltx2_19b.LATENT_UPSAMPLER_CONFIG, use_rational_resampler=False)

# 2.0's classes, but the vocoder with bandwidth extension.
_DIFFUSERS_COMPONENTS: dict[str, tuple[str, str, dict[str, Any]]] = ltx2_19b.component_table(
    dict(
        transformer=TRANSFORMER_CONFIG,
        connectors=CONNECTORS_CONFIG,
        vae=VIDEO_VAE_CONFIG,
        audio_vae=AUDIO_VAE_CONFIG,
        vocoder=VOCODER_CONFIG,
        latent_upsampler=LATENT_UPSAMPLER_CONFIG,
    ),
    vocoder_class="LTX2VocoderWithBWE",
)
COMPONENTS = (*_DIFFUSERS_COMPONENTS, "text_encoder")
DISTILLED_LORA_RANK = 384  # ltx-2.3-22b-distilled-lora-384
_SEED = 23


def build_component(name: str, device="meta", dtype: torch.dtype = torch.bfloat16):
    """One full-size component with random weights on ``device`` (``meta``: shapes only, no memory)."""
    with ltx2_19b._built_as(device, dtype):
        return ltx2_19b.build_listed(_DIFFUSERS_COMPONENTS, name).eval()


def build_random_22b_bundle(device, dtype: torch.dtype = torch.bfloat16, *, timings: dict | None = None):
    """LTX-2.3 22B with random weights built on ``device``, wrapped like real weights (LTX2Bundle, with a
    rank-384 distilled LoRA on every attention and feed-forward projection). ``timings``: seconds per part."""
    return ltx2_19b.build_random_bundle(_DIFFUSERS_COMPONENTS, _SEED, DISTILLED_LORA_RANK, device, dtype, timings)


__all__ = [
    "AUDIO_VAE_CONFIG",
    "COMPONENTS",
    "CONNECTORS_CONFIG",
    "LATENT_UPSAMPLER_CONFIG",
    "TRANSFORMER_CONFIG",
    "VIDEO_VAE_CONFIG",
    "VOCODER_CONFIG",
    "build_component",
    "build_random_22b_bundle",
]
