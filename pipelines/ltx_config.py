"""Lightricks' model config (the JSON its single-file checkpoints carry in their metadata, under "config") read
into the constructor arguments of diffusers' LTX-2 classes.

ltx-core 1.0.0 builds each model from that JSON with its configurators (``ltx_core/model/*/model_configurator.py``,
``ltx_core/text_encoders/gemma/...``); every default below is the default those configurators apply when a
key is absent, so a checkpoint reads the same here as there. diffusers' own conversion script hard-codes one
config per version; reading the checkpoint's instead is what lets the same code load LTX-2.0-style and
LTX-2.3-style files (gated attention, prompt AdaLN, per-modality text projections, the rebuilt video VAE, the
vocoder with bandwidth extension) and the tiny ones the tests write.

Torch-free: plain dicts in, plain dicts out. The parity suite (tests/parity/twins23.py) checks every
translation by loading the converted weights strictly and comparing outputs with ltx-core's models.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

CONFIG_METADATA_KEY = "config"  # where ltx-core's SafetensorsModelStateDictLoader.metadata reads the config
MODEL_VERSION_METADATA_KEY = "model_version"

# ltx-core's LTXModelConfigurator checks these values and supports nothing else.
_FIXED_TRANSFORMER = dict(
    patch_size=1,
    patch_size_t=1,
    audio_patch_size=1,
    audio_patch_size_t=1,
    vae_scale_factors=(8, 32, 32),  # ltx-core's VIDEO_SCALE_FACTORS
    audio_scale_factor=4,
    activation_fn="gelu-approximate",
    qk_norm="rms_norm_across_heads",  # ltx-core's "rms_norm" over the whole inner dim
    norm_elementwise_affine=False,
    attention_bias=True,
    attention_out_bias=True,
    causal_offset=1,
)


def config_from_metadata(metadata: Mapping[str, str]) -> dict[str, Any]:
    """The model config of a checkpoint's metadata (ValueError when it has none)."""
    raw = metadata.get(CONFIG_METADATA_KEY)
    if not raw:
        raise ValueError("the checkpoint's metadata has no model config ('config')")
    config = json.loads(raw)
    if not isinstance(config, dict):
        raise ValueError("the checkpoint's 'config' metadata is not a JSON object")
    return config


def _audio_stft(config: Mapping[str, Any]) -> tuple[int, int]:
    audio_vae = config.get("audio_vae", {})
    sample_rate = audio_vae.get("model", {}).get("params", {}).get("sampling_rate", 16000)
    hop_length = audio_vae.get("preprocessing", {}).get("stft", {}).get("hop_length", 160)
    return sample_rate, hop_length


def has_text_projection_in_connectors(config: Mapping[str, Any]) -> bool:
    """LTX-2.3's layout: the Gemma features are projected per modality before the connectors
    (ltx-core's FeatureExtractorV2, chosen by ``caption_proj_before_connector``), not inside the transformer."""
    return bool(config.get("transformer", {}).get("caption_proj_before_connector", False))


def transformer_kwargs(config: Mapping[str, Any]) -> dict[str, Any]:
    """LTX2VideoTransformer3DModel arguments (LTXModelConfigurator's reading of ``config["transformer"]``)."""
    t = config.get("transformer", {})
    max_pos = t.get("positional_embedding_max_pos", [20, 2048, 2048])
    sample_rate, hop_length = _audio_stft(config)
    gated = bool(t.get("apply_gated_attention", False))
    prompt_adaln = bool(t.get("cross_attention_adaln", False))
    return dict(
        _FIXED_TRANSFORMER,
        in_channels=t.get("in_channels", 128),
        out_channels=t.get("out_channels", 128),
        num_attention_heads=t.get("num_attention_heads", 32),
        attention_head_dim=t.get("attention_head_dim", 128),
        cross_attention_dim=t.get("cross_attention_dim", 4096),
        num_layers=t.get("num_layers", 48),
        caption_channels=t.get("caption_channels", 3840),
        pos_embed_max_pos=max_pos[0],
        base_height=max_pos[1],
        base_width=max_pos[2],
        gated_attn=gated,
        cross_attn_mod=prompt_adaln,
        audio_in_channels=t.get("audio_in_channels", 128),
        audio_out_channels=t.get("audio_out_channels", 128),
        audio_num_attention_heads=t.get("audio_num_attention_heads", 32),
        audio_attention_head_dim=t.get("audio_attention_head_dim", 64),
        audio_cross_attention_dim=t.get("audio_cross_attention_dim", 2048),
        audio_pos_embed_max_pos=t.get("audio_positional_embedding_max_pos", [20])[0],
        audio_sampling_rate=sample_rate,
        audio_hop_length=hop_length,
        audio_gated_attn=gated,
        audio_cross_attn_mod=prompt_adaln,
        norm_eps=t.get("norm_eps", 1e-6),
        rope_theta=t.get("positional_embedding_theta", 10000.0),
        rope_double_precision=t.get("frequencies_precision", False) == "float64",
        timestep_scale_multiplier=t.get("timestep_scale_multiplier", 1000),
        cross_attn_timestep_scale_multiplier=t.get("av_ca_timestep_scale_multiplier", 1),
        rope_type=t.get("rope_type", "interleaved"),
        use_prompt_embeddings=not has_text_projection_in_connectors(config),
        # The attention processor that honours STG (spatio_temporal_guidance_blocks); no weights of its own.
        perturbed_attn=True,
    )


def connectors_kwargs(config: Mapping[str, Any], text_hidden: int, text_layers: int) -> dict[str, Any]:
    """LTX2TextConnectors arguments: ltx-core's embeddings processor (feature extractor V1 or V2 and the two
    Embeddings1DConnectors of ``embeddings_connector.py``) for a text encoder of ``text_hidden`` width and
    ``text_layers`` layers (Gemma 3 12B: 3840 and 48)."""
    t = config.get("transformer", {})
    per_modality = has_text_projection_in_connectors(config)
    video_heads = t.get("connector_num_attention_heads", 30)
    video_head_dim = t.get("connector_attention_head_dim", 128)
    gated = bool(t.get("connector_apply_gated_attention", False))
    return dict(
        caption_channels=text_hidden,
        text_proj_in_factor=text_layers + 1,  # every hidden state, the embeddings' included
        video_connector_num_attention_heads=video_heads,
        video_connector_attention_head_dim=video_head_dim,
        video_connector_num_layers=t.get("connector_num_layers", 2),
        video_connector_num_learnable_registers=128,  # Embeddings1DConnector's default; the configurators keep it
        video_gated_attn=gated,
        audio_connector_num_attention_heads=t.get("audio_connector_num_attention_heads", video_heads),
        audio_connector_attention_head_dim=t.get("audio_connector_attention_head_dim", video_head_dim),
        audio_connector_num_layers=t.get("audio_connector_num_layers", t.get("connector_num_layers", 2)),
        audio_connector_num_learnable_registers=128,
        audio_gated_attn=gated,
        connector_rope_base_seq_len=t.get("connector_positional_embedding_max_pos", [1])[0],
        rope_theta=10000.0,  # Embeddings1DConnector's default: the configurators pass no theta
        rope_double_precision=t.get("frequencies_precision", False) == "float64",
        causal_temporal_positioning=False,
        rope_type=t.get("rope_type", "interleaved"),
        per_modality_projections=per_modality,
        video_hidden_dim=t.get("num_attention_heads", 32) * t.get("attention_head_dim", 128),
        audio_hidden_dim=t.get("audio_num_attention_heads", 32) * t.get("audio_attention_head_dim", 64),
        proj_bias=per_modality,  # FeatureExtractorV2's projections have biases, V1's one does not
    )


_ENCODER_DOWNSAMPLES = {
    "compress_space_res": "spatial",
    "compress_time_res": "temporal",
    "compress_all_res": "spatiotemporal",
}
_DECODER_UPSAMPLES = {"compress_space": "spatial", "compress_time": "temporal", "compress_all": "spatiotemporal"}
_SPATIAL = ("spatial", "spatiotemporal")
_TEMPORAL = ("temporal", "spatiotemporal")


def _blocks(entries: list) -> list[tuple[str, dict[str, Any]]]:
    """ltx-core block lists hold [name, params]; params is a dict, or an int meaning num_layers."""
    return [(name, {"num_layers": params} if isinstance(params, int) else dict(params)) for name, params in entries]


def _alternating(blocks: list[tuple[str, dict[str, Any]]], scalers: Mapping[str, str], side: str):
    """res_x, scaler, res_x, ..., res_x -> (the res_x blocks, the scalers): the only order diffusers' VAE has."""
    resnets, scalers_found = blocks[0::2], blocks[1::2]
    for name, _ in resnets:
        if name != "res_x":
            raise ValueError(f"video VAE {side}: unsupported block {name!r} where res_x was expected")
    for name, _ in scalers_found:
        if name not in scalers:
            raise ValueError(f"video VAE {side}: unsupported block {name!r} (supported: {', '.join(scalers)})")
    if len(resnets) != len(scalers_found) + 1:
        raise ValueError(f"video VAE {side}: blocks must alternate res_x and a resampler, from res_x to res_x")
    return resnets, scalers_found


def video_vae_kwargs(config: Mapping[str, Any]) -> dict[str, Any]:
    """AutoencoderKLLTX2Video arguments from ltx-core's VideoEncoder/VideoDecoder block lists.

    The encoder list runs from the pixels to the latent; the decoder list is written from the pixels too
    and ltx-core reverses it. diffusers keeps per-block lists the other way round for some arguments (it
    reverses layers, channels, factors and residual flags, but not the upsampler types): each is built
    here in the order diffusers reads it.
    """
    v = config.get("vae", {})
    latent_channels = v.get("latent_channels", 128)
    encoder_res, downsamplers = _alternating(_blocks(v.get("encoder_blocks", [])), _ENCODER_DOWNSAMPLES, "encoder")
    channels, block_out = latent_channels, []
    for _, params in downsamplers:
        channels *= params.get("multiplier", 2)
        block_out.append(channels)
    down_types = [_ENCODER_DOWNSAMPLES[name] for name, _ in downsamplers]

    decoder = list(reversed(_blocks(v.get("decoder_blocks", []))))  # latent side first, as ltx-core runs it
    decoder_res, upsamplers = _alternating(decoder, _DECODER_UPSAMPLES, "decoder")
    channels = v.get("decoder_base_channels", 128) * 8  # ltx-core VideoDecoder: base_channels * 8 after conv_in
    up_channels = []  # latent side first: each up block's width before its upsampler's channel reduction
    for _, params in upsamplers:
        up_channels.append(channels)
        channels //= params.get("multiplier", 1)
    up_types = [_DECODER_UPSAMPLES[name] for name, _ in upsamplers]
    padding = v.get("spatial_padding_mode")
    return dict(
        in_channels=v.get("in_channels", 3),
        out_channels=v.get("out_channels", 3),
        latent_channels=latent_channels,
        block_out_channels=tuple(block_out),
        down_block_types=("LTX2VideoDownBlock3D",) * len(downsamplers),
        layers_per_block=tuple(params["num_layers"] for _, params in encoder_res),
        spatio_temporal_scaling=(True,) * len(downsamplers),
        downsample_type=tuple(down_types),
        decoder_block_out_channels=tuple(reversed(up_channels)),
        decoder_layers_per_block=tuple(reversed([params["num_layers"] for _, params in decoder_res])),
        decoder_spatio_temporal_scaling=(True,) * len(upsamplers),
        decoder_inject_noise=tuple(reversed([params.get("inject_noise", False) for _, params in decoder_res])),
        upsample_type=tuple(up_types),
        upsample_residual=tuple(reversed([params.get("residual", False) for _, params in upsamplers])),
        upsample_factor=tuple(reversed([params.get("multiplier", 1) for _, params in upsamplers])),
        timestep_conditioning=v.get("timestep_conditioning", True),  # VideoDecoderConfigurator's default
        patch_size=v.get("patch_size", 4),
        patch_size_t=1,
        resnet_norm_eps=1e-6,
        encoder_causal=True,
        decoder_causal=v.get("causal_decoder", False),
        encoder_spatial_padding_mode=padding or "zeros",
        decoder_spatial_padding_mode=padding or "reflect",
        spatial_compression_ratio=v.get("patch_size", 4) * 2 ** sum(t in _SPATIAL for t in down_types),
        temporal_compression_ratio=2 ** sum(t in _TEMPORAL for t in down_types),
    )


def audio_vae_kwargs(config: Mapping[str, Any]) -> dict[str, Any]:
    """AutoencoderKLLTX2Audio arguments (AudioDecoderConfigurator / AudioEncoderConfigurator)."""
    a = config.get("audio_vae", {})
    params = a.get("model", {}).get("params", {})
    dd = params.get("ddconfig", {})
    stft = a.get("preprocessing", {}).get("stft", {})
    mel = a.get("preprocessing", {}).get("mel", {})
    attention = dd.get("attn_resolutions", [8, 16, 32])
    return dict(
        base_channels=dd.get("ch", 128),
        output_channels=dd.get("out_ch", 2),
        ch_mult=tuple(dd.get("ch_mult", (1, 2, 4))),
        num_res_blocks=dd.get("num_res_blocks", 2),
        attn_resolutions=tuple(attention) if attention else None,
        in_channels=dd.get("in_channels", 2),
        resolution=dd.get("resolution", 256),
        latent_channels=dd.get("z_channels", 8),
        norm_type=dd.get("norm_type", "pixel"),
        causality_axis=dd.get("causality_axis", "height"),
        dropout=dd.get("dropout", 0.0),
        mid_block_add_attention=dd.get("mid_block_add_attention", True),
        sample_rate=params.get("sampling_rate", 16000),
        mel_hop_length=stft.get("hop_length", 160),
        is_causal=stft.get("causal", True),
        mel_bins=dd.get("mel_bins") or mel.get("n_mel_channels") or a.get("variables", {}).get("mel_bins"),
        double_z=dd.get("double_z", True),
    )


# ltx-core's Vocoder is stereo in and out; it hard-codes 2 x 64 mel bins in (conv_pre: 128 channels), which is
# what every released config has. The input width is derived here from the mel bins each generator reads, so
# the tiny test models may use fewer.
_STEREO = 2


def _generator_kwargs(
    cfg: Mapping[str, Any], *, mel_bins: int, final_activation: bool, sampling_rate: int
) -> dict[str, Any]:
    amp = cfg.get("resblock", "1") == "AMP1"
    if amp and cfg.get("activation", "snake") != "snakebeta":
        raise ValueError(f"vocoder: AMP1 blocks with {cfg.get('activation', 'snake')!r} activation are not supported")
    final = None
    if final_activation:
        final = "tanh" if cfg.get("use_tanh_at_final", True) else "clamp"
    return dict(
        in_channels=_STEREO * mel_bins,
        hidden_channels=cfg.get("upsample_initial_channel", 1024),
        out_channels=_STEREO,
        upsample_kernel_sizes=list(cfg.get("upsample_kernel_sizes", [16, 15, 8, 4, 4])),
        upsample_factors=list(cfg.get("upsample_rates", [6, 5, 2, 2, 2])),
        resnet_kernel_sizes=list(cfg.get("resblock_kernel_sizes", [3, 7, 11])),
        resnet_dilations=[list(d) for d in cfg.get("resblock_dilation_sizes", [[1, 3, 5], [1, 3, 5], [1, 3, 5]])],
        act_fn="snakebeta" if amp else "leaky_relu",
        leaky_relu_negative_slope=0.1,  # ltx-core's LRELU_SLOPE
        antialias=amp,  # AMP1 blocks run their activations anti-aliased (2x up/down, 12 taps)
        antialias_ratio=2,
        antialias_kernel_size=12,
        final_act_fn=final,
        final_bias=cfg.get("use_bias_at_final", True),
        output_sampling_rate=sampling_rate,
    )


def has_bandwidth_extension(config: Mapping[str, Any]) -> bool:
    """LTX-2.3's vocoder: a nested "vocoder" + "bwe" config (VocoderConfigurator's test)."""
    return "bwe" in config.get("vocoder", {})


def vocoder_kwargs(config: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """("LTX2Vocoder" or "LTX2VocoderWithBWE", its arguments), as VocoderConfigurator builds Vocoder or
    VocoderWithBWE."""
    cfg = config.get("vocoder", {})
    mel_bins = audio_vae_kwargs(config)["mel_bins"] or 64
    if not has_bandwidth_extension(config):
        sampling_rate = cfg.get("output_sampling_rate", 24000)
        plain = _generator_kwargs(cfg, mel_bins=mel_bins, final_activation=True, sampling_rate=sampling_rate)
        return "LTX2Vocoder", plain
    bwe = cfg["bwe"]
    inner = cfg.get("vocoder", {})
    vocoder = _generator_kwargs(
        inner, mel_bins=mel_bins, final_activation=True, sampling_rate=bwe["input_sampling_rate"]
    )
    extender = _generator_kwargs(
        bwe, mel_bins=bwe["num_mels"], final_activation=False, sampling_rate=bwe["output_sampling_rate"]
    )
    kwargs = {key: value for key, value in vocoder.items() if key != "output_sampling_rate"}
    kwargs.update({f"bwe_{key}": value for key, value in extender.items() if key != "output_sampling_rate"})
    kwargs.update(
        filter_length=bwe["n_fft"],
        hop_length=bwe["hop_length"],
        window_length=bwe["n_fft"],
        num_mel_channels=bwe["num_mels"],
        input_sampling_rate=bwe["input_sampling_rate"],
        output_sampling_rate=bwe["output_sampling_rate"],
    )
    return "LTX2VocoderWithBWE", kwargs


def latent_upsampler_kwargs(config: Mapping[str, Any]) -> dict[str, Any]:
    """LTX2LatentUpsamplerModel arguments (LatentUpsamplerConfigurator, from the upsampler file's own config)."""
    return dict(
        in_channels=config.get("in_channels", 128),
        mid_channels=config.get("mid_channels", 512),
        num_blocks_per_stage=config.get("num_blocks_per_stage", 4),
        dims=config.get("dims", 3),
        spatial_upsample=config.get("spatial_upsample", True),
        temporal_upsample=config.get("temporal_upsample", False),
        rational_spatial_scale=config.get("spatial_scale", 2.0),
        use_rational_resampler=config.get("rational_resampler", False),
    )


__all__ = [
    "CONFIG_METADATA_KEY",
    "MODEL_VERSION_METADATA_KEY",
    "audio_vae_kwargs",
    "config_from_metadata",
    "connectors_kwargs",
    "has_bandwidth_extension",
    "has_text_projection_in_connectors",
    "latent_upsampler_kwargs",
    "transformer_kwargs",
    "video_vae_kwargs",
    "vocoder_kwargs",
]
