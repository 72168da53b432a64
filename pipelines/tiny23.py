"""A tiny, randomly initialised LTX-2.3 image-to-video pipeline built entirely in code (``--model tiny-2.3``).

It is written as Lightricks writes an LTX-2.3 model: an ltx-core config (the JSON a 2.3 checkpoint carries),
with every switch that makes the generation 2.3 (gated attention, prompt AdaLN, the text projected per
modality before deeper connectors, the rebuilt four-upsampler video VAE, the vocoder with bandwidth extension
to 48 kHz), read into diffusers' classes by the same code that reads a real 2.3 checkpoint
(pipelines/ltx_config.py). Only widths and depths shrink, to what a 2-core CPU runs in seconds; what must match
the real model stays: x32 spatial / x8 temporal compression, 16 kHz mel at hop 160, 48 kHz out.

The text encoder, tokenizer, scheduler, latent upsampler and the stage-2 LoRA's shape are the tiny LTX-2.0
model's (pipelines/tiny.py): LTX-2.3 keeps Gemma 3 and the upsampler's layout. No network, no files: weights
come from fixed seeds (diffusers' own initialisation), so two builds are bit-identical.
"""

from __future__ import annotations

import torch

from . import ltx_config
from .tiny import (
    _TINY_LORA_TARGETS,
    TEXT_HIDDEN,
    TEXT_LAYERS,
    TINY_LORA_RANK,
    VIDEO_LATENT_CHANNELS,
    _build_scheduler,
    _build_text_encoder,
    _build_tokenizer,
    build_tiny_latent_upsampler,
    random_lightricks_lora,
)

_SEED_CONNECTORS = 11
_SEED_TRANSFORMER = 12
_SEED_VAE = 13
_SEED_AUDIO_VAE = 14
_SEED_VOCODER = 15
_SEED_DISTILLED_LORA = 17

AUDIO_LATENT_CHANNELS = 2
AUDIO_MEL_BINS = 16  # the real model's 64, quartered: the audio VAE and the vocoder's input shrink with it


def _resnets(*layers: int) -> list:
    return [["res_x", {"num_layers": n}] for n in layers]


def _alternate(resnets: list, resamplers: list) -> list:
    blocks = [resnets[0]]
    for resampler, resnet in zip(resamplers, resnets[1:], strict=True):
        blocks += [resampler, resnet]
    return blocks


# The decoder, latent side first, as the rebuilt 2.3 VAE: two spatio-temporal upsamplers (the second keeping
# its width), then a temporal and a spatial one. No resnets at full resolution / 4: that stage runs on every
# output pixel, and a test model's frames need none.
_DECODER_LATENT_FIRST = _alternate(
    _resnets(1, 1, 1, 1, 0),
    [
        ["compress_all", {"multiplier": 2, "residual": False}],
        ["compress_all", {"multiplier": 1, "residual": False}],
        ["compress_time", {"multiplier": 2}],
        ["compress_space", {"multiplier": 2}],
    ],
)

TINY_LTX_2_3_CONFIG: dict = {
    "transformer": {
        # One layer and one narrow head per modality, as the tiny LTX-2.0 model (pipelines/tiny.py).
        "num_attention_heads": 1,
        "attention_head_dim": 12,
        "cross_attention_dim": 12,
        "in_channels": VIDEO_LATENT_CHANNELS,
        "out_channels": VIDEO_LATENT_CHANNELS,
        "num_layers": 1,
        "audio_num_attention_heads": 1,
        "audio_attention_head_dim": 8,
        "audio_cross_attention_dim": 8,
        "audio_in_channels": AUDIO_LATENT_CHANNELS * (AUDIO_MEL_BINS // 4),
        "audio_out_channels": AUDIO_LATENT_CHANNELS * (AUDIO_MEL_BINS // 4),
        "positional_embedding_max_pos": [20, 2048, 2048],
        "audio_positional_embedding_max_pos": [20],
        "timestep_scale_multiplier": 1000,
        "av_ca_timestep_scale_multiplier": 1000,
        "rope_type": "split",
        "frequencies_precision": "float32",  # float64 RoPE buys nothing on random weights
        # LTX-2.3's switches
        "apply_gated_attention": True,
        "cross_attention_adaln": True,
        "caption_proj_before_connector": True,
        "caption_projection_first_linear": False,
        "caption_proj_input_norm": False,
        "caption_projection_second_linear": False,
        "connector_apply_gated_attention": True,
        "connector_num_attention_heads": 1,
        "connector_attention_head_dim": 12,
        "connector_num_layers": 2,
        "audio_connector_num_attention_heads": 1,
        "audio_connector_attention_head_dim": 8,
        "audio_connector_num_layers": 2,
        "connector_positional_embedding_max_pos": [4096],
    },
    "vae": {
        "latent_channels": VIDEO_LATENT_CHANNELS,
        "patch_size": 4,
        "encoder_blocks": _alternate(
            _resnets(1, 1, 1, 1, 1),
            [
                ["compress_space_res", {"multiplier": 1}],
                ["compress_time_res", {"multiplier": 1}],
                ["compress_all_res", {"multiplier": 1}],
                ["compress_all_res", {"multiplier": 1}],
            ],
        ),
        "decoder_blocks": list(reversed(_DECODER_LATENT_FIRST)),  # ltx-core writes it from the pixels' side
        "decoder_base_channels": 2,  # 16 channels after conv_in, 2 at full resolution / 4
        "timestep_conditioning": False,
        "causal_decoder": False,
        "spatial_padding_mode": "zeros",
    },
    "audio_vae": {
        "model": {
            "params": {
                "sampling_rate": 16000,
                "ddconfig": {
                    "ch": AUDIO_LATENT_CHANNELS * AUDIO_MEL_BINS // 4,  # diffusers' audio VAE requires this width
                    "out_ch": 2,
                    "in_channels": 2,
                    "ch_mult": [1, 2, 4],  # x4 time and x4 mel compression, like the real one
                    "num_res_blocks": 1,
                    "attn_resolutions": [],
                    "resolution": 32,
                    "z_channels": AUDIO_LATENT_CHANNELS,
                    "double_z": True,
                    "norm_type": "pixel",
                    "causality_axis": "height",
                    "dropout": 0.0,
                    "mid_block_add_attention": False,
                    "mel_bins": AUDIO_MEL_BINS,
                },
            }
        },
        "preprocessing": {"stft": {"hop_length": 160, "filter_length": 1024, "causal": True}},
    },
    "vocoder": {
        # 16 kHz mel at hop 160: 160 samples per frame, as the real 2.3 vocoder, in three upsamplers instead of
        # six (each halves the width, so fewer let it start at 8 channels instead of 64: ~10x less CPU).
        "vocoder": {
            "resblock": "AMP1",
            "stereo": True,
            "activation": "snakebeta",
            "upsample_initial_channel": 8,
            "upsample_rates": [10, 4, 4],
            "upsample_kernel_sizes": [20, 8, 8],
            "resblock_kernel_sizes": [3],
            "resblock_dilation_sizes": [[1, 3, 5]],
            "use_tanh_at_final": False,
            "use_bias_at_final": False,
        },
        # Its own log-mel at hop 80 (200 frames/s) x 240 samples per frame: the 48 kHz of the real extension.
        "bwe": {
            "resblock": "AMP1",
            "stereo": True,
            "activation": "snakebeta",
            "upsample_initial_channel": 8,
            "upsample_rates": [6, 5, 8],
            "upsample_kernel_sizes": [12, 11, 16],
            "resblock_kernel_sizes": [3],
            "resblock_dilation_sizes": [[1, 3, 5]],
            "use_tanh_at_final": False,
            "use_bias_at_final": False,
            "input_sampling_rate": 16000,
            "output_sampling_rate": 48000,
            "hop_length": 80,
            "n_fft": 512,
            "num_mels": AUDIO_MEL_BINS,
        },
    },
}


def _seeded(seed: int, cls, kwargs: dict):
    torch.manual_seed(seed)
    return cls(**kwargs).eval()


def _build_vocoder():
    from diffusers.pipelines.ltx2 import vocoder as vocoders

    class_name, kwargs = ltx_config.vocoder_kwargs(TINY_LTX_2_3_CONFIG)
    vocoder = _seeded(_SEED_VOCODER, getattr(vocoders, class_name), kwargs)
    _fill_mel_front_end(vocoder.mel_stft)
    return vocoder


def _fill_mel_front_end(mel_stft) -> None:
    """The extension's STFT and mel bases are checkpoint buffers (zeros when built); a test model gets a real
    windowed DFT and a triangular filterbank, so its log-mel follows the waveform instead of sitting at the floor."""
    stft = mel_stft.stft_fn
    filter_length = stft.forward_basis.shape[-1]
    freqs = filter_length // 2 + 1
    time = torch.arange(filter_length, dtype=torch.float64)
    window = torch.hann_window(filter_length, periodic=True, dtype=torch.float64)
    angles = 2 * torch.pi * torch.arange(freqs, dtype=torch.float64)[:, None] * time[None] / filter_length
    basis = torch.cat([torch.cos(angles), -torch.sin(angles)]) * window
    bins = mel_stft.mel_basis.shape[0]
    centres = torch.linspace(0, freqs - 1, bins + 2, dtype=torch.float64)
    grid = torch.arange(freqs, dtype=torch.float64)
    left, centre, right = centres[:-2, None], centres[1:-1, None], centres[2:, None]
    filterbank = torch.clamp(torch.minimum((grid - left) / (centre - left), (right - grid) / (right - centre)), min=0)
    with torch.no_grad():
        stft.forward_basis.copy_(basis.unsqueeze(1).float())
        stft.inverse_basis.copy_(basis.unsqueeze(1).float())
        mel_stft.mel_basis.copy_(filterbank.float())


def build_tiny23_pipeline():
    """A deterministic tiny LTX2ImageToVideoPipeline of LTX-2.3's architecture on the CPU (float32)."""
    from diffusers import (
        AutoencoderKLLTX2Audio,
        AutoencoderKLLTX2Video,
        LTX2ImageToVideoPipeline,
        LTX2VideoTransformer3DModel,
    )
    from diffusers.pipelines.ltx2 import LTX2TextConnectors

    config = TINY_LTX_2_3_CONFIG
    tokenizer = _build_tokenizer()
    pipe = LTX2ImageToVideoPipeline(
        scheduler=_build_scheduler(),
        vae=_seeded(_SEED_VAE, AutoencoderKLLTX2Video, ltx_config.video_vae_kwargs(config)),
        audio_vae=_seeded(_SEED_AUDIO_VAE, AutoencoderKLLTX2Audio, ltx_config.audio_vae_kwargs(config)),
        text_encoder=_build_text_encoder(len(tokenizer), tokenizer),
        tokenizer=tokenizer,
        connectors=_seeded(
            _SEED_CONNECTORS, LTX2TextConnectors, ltx_config.connectors_kwargs(config, TEXT_HIDDEN, TEXT_LAYERS)
        ),
        transformer=_seeded(_SEED_TRANSFORMER, LTX2VideoTransformer3DModel, ltx_config.transformer_kwargs(config)),
        vocoder=_build_vocoder(),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_tiny23_latent_upsampler():
    """LTX-2.3's spatial upscaler has LTX-2.0's layout: the tiny model shares pipelines/tiny.py's."""
    return build_tiny_latent_upsampler()


def build_tiny23_distilled_lora(transformer) -> dict[str, torch.Tensor]:
    """A tiny stage-2 LoRA in Lightricks' key format (as ltx-2.3-22b-distilled-lora-384 is published)."""
    return random_lightricks_lora(
        transformer, targets=_TINY_LORA_TARGETS, rank=TINY_LORA_RANK, seed=_SEED_DISTILLED_LORA, std_a=0.1, std_b=0.1
    )


__all__ = [
    "TINY_LTX_2_3_CONFIG",
    "build_tiny23_distilled_lora",
    "build_tiny23_latent_upsampler",
    "build_tiny23_pipeline",
]
