"""Tiny random LTX-2 (version 2.0) models built twice, with identical weights: once from Lightricks' reference
implementation (ltx-core 1.0.0) and once from diffusers, for the parity suite.

Everything is built in code from a seed (fp32, CPU, no files, no network). The order is the one real weights
take: the reference models are created from an ltx-core config dict through ltx-core's own configurators and
given random weights; their state dicts are then written out under the key prefixes Lightricks' single-file
checkpoints use ("model.diffusion_model.", "vae.", "audio_vae.", "vocoder.", "text_embedding_projection.")
and converted with diffusers' converters (``diffusers.loaders.single_file_utils``; the text connectors, which
have no single-file converter there, with the server's own mapping, pipelines/checkpoint_keys.py, so the twins
test the conversion production runs; the vocoder and the latent upsampler with the renames of diffusers'
``scripts/convert_ltx2_to_diffusers.py``, re-implemented below) into diffusers models whose configs are
derived from the same numbers. Loads are strict, so a key or shape that does not line up fails the build.

Entry point: :func:`build_twins` (cached). Helpers :func:`reference_transformer_inputs` /
:func:`run_reference_transformer` / :func:`run_diffusers_transformer` run one transformer step on both sides
from the same latents.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from pipelines.tiny import (
    _TINY_LORA_TARGETS,
    AUDIO_OUTPUT_CHANNELS,
    TEXT_HIDDEN,
    TEXT_LAYERS,
    TINY_LORA_RANK,
    _build_scheduler,
    _build_text_encoder,
    _build_tokenizer,
    random_lightricks_lora,
)

# Makes ltx_core importable without torchaudio; every ltx_core import below is inside a function, i.e. after it.
from . import reference  # noqa: F401

# ---------------------------------------------------------------------------------------------------------------
# Sizes. Everything that fixes behaviour is the 2.0 value (split RoPE in float64, x32/x8 VAE compression with the
# 2.0 block layout, 16 kHz mel / hop 160 / 64 mel bins, 24 kHz vocoder, 2x rational latent upsampler, 128 connector
# registers); only widths and depths shrink.
# ---------------------------------------------------------------------------------------------------------------
VIDEO_LATENT_CHANNELS = 8
AUDIO_LATENT_CHANNELS = 2  # audio VAE z_channels
AUDIO_MEL_BINS = 64  # ltx-core's Vocoder hard-codes 128 = 2 (stereo) x 64 mel input channels
AUDIO_LATENT_MEL_BINS = AUDIO_MEL_BINS // 4
AUDIO_TOKEN_CHANNELS = AUDIO_LATENT_CHANNELS * AUDIO_LATENT_MEL_BINS  # 32: audio transformer in/out channels

VIDEO_HEADS, VIDEO_HEAD_DIM = 2, 16  # inner 32
AUDIO_HEADS, AUDIO_HEAD_DIM = 2, 8  # inner 16 (split RoPE of the a2v/v2a attention needs equal head counts)
NUM_LAYERS = 2
CONNECTOR_HEADS, CONNECTOR_HEAD_DIM = 2, 8  # inner = TEXT_HIDDEN (16), as 30 x 128 = 3840 in 2.0
CONNECTOR_LAYERS = 2
CONNECTOR_REGISTERS = 128
CONNECTOR_ROPE_MAX_POS = 4096

VAE_ENCODER_CHANNELS = (16, 16, 32, 32)  # after the spatial, temporal, and two spatiotemporal downsamplers
VAE_ENCODER_LAYERS = (1, 1, 1, 1, 1)
VAE_DECODER_CHANNELS = (8, 16, 32)  # diffusers' decoder_block_out_channels; reference base_channels = 32 / 8
VAE_DECODER_LAYERS = (1, 1, 1, 1)

AUDIO_VAE_CH_MULT = (1, 2, 4)
AUDIO_VAE_RES_BLOCKS = 1

VOCODER_HIDDEN = 32  # halves at each of the 5 upsamplers: 32 -> 1
VOCODER_UPSAMPLE_RATES = [6, 5, 2, 2, 2]  # 160 mel hop x 24/16 = 240 samples per mel frame
VOCODER_UPSAMPLE_KERNELS = [16, 15, 8, 4, 4]
VOCODER_RESBLOCK_KERNELS = [3, 7, 11]
VOCODER_RESBLOCK_DILATIONS = [[1, 3, 5], [1, 3, 5], [1, 3, 5]]

UPSAMPLER_MID_CHANNELS = 32  # GroupNorm(32, .) needs a multiple of 32
UPSAMPLER_BLOCKS = 1

LTX_CORE_CONFIG: dict = {
    "transformer": {
        # the values LTXModelConfigurator insists on
        "dropout": 0.0,
        "attention_bias": True,
        "num_vector_embeds": None,
        "activation_fn": "gelu-approximate",
        "num_embeds_ada_norm": 1000,
        "use_linear_projection": False,
        "only_cross_attention": False,
        "cross_attention_norm": True,
        "double_self_attention": False,
        "upcast_attention": False,
        "standardization_norm": "rms_norm",
        "norm_elementwise_affine": False,
        "qk_norm": "rms_norm",
        "positional_embedding_type": "rope",
        "use_audio_video_cross_attention": True,
        "share_ff": False,
        "av_cross_ada_norm": True,
        "use_middle_indices_grid": True,
        # sizes
        "num_attention_heads": VIDEO_HEADS,
        "attention_head_dim": VIDEO_HEAD_DIM,
        "in_channels": VIDEO_LATENT_CHANNELS,
        "out_channels": VIDEO_LATENT_CHANNELS,
        "num_layers": NUM_LAYERS,
        "cross_attention_dim": VIDEO_HEADS * VIDEO_HEAD_DIM,
        "caption_channels": TEXT_HIDDEN,
        "audio_num_attention_heads": AUDIO_HEADS,
        "audio_attention_head_dim": AUDIO_HEAD_DIM,
        "audio_in_channels": AUDIO_TOKEN_CHANNELS,
        "audio_out_channels": AUDIO_TOKEN_CHANNELS,
        "audio_cross_attention_dim": AUDIO_HEADS * AUDIO_HEAD_DIM,
        # LTX-2.0 (19B) behaviour
        "norm_eps": 1e-6,
        "positional_embedding_theta": 10000.0,
        "positional_embedding_max_pos": [20, 2048, 2048],
        "audio_positional_embedding_max_pos": [20],
        "timestep_scale_multiplier": 1000,
        "av_ca_timestep_scale_multiplier": 1000,
        "rope_type": "split",
        "frequencies_precision": "float64",
        "connector_num_attention_heads": CONNECTOR_HEADS,
        "connector_attention_head_dim": CONNECTOR_HEAD_DIM,
        "connector_num_layers": CONNECTOR_LAYERS,
        "connector_positional_embedding_max_pos": [CONNECTOR_ROPE_MAX_POS],
    },
    "vae": {
        "dims": 3,
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": VIDEO_LATENT_CHANNELS,
        "patch_size": 4,
        "norm_layer": "pixel_norm",
        "latent_log_var": "uniform",
        "causal_decoder": False,
        "timestep_conditioning": False,  # LTX-2.0's VAE decoder is not timestep-conditioned
        "spatial_padding_mode": None,  # filled per side below (encoder zeros, decoder reflect: the defaults)
        "decoder_base_channels": VAE_DECODER_CHANNELS[-1] // 8,
    },
    "audio_vae": {
        "model": {
            "params": {
                "sampling_rate": 16000,
                "ddconfig": {
                    "ch": AUDIO_TOKEN_CHANNELS,
                    "out_ch": AUDIO_OUTPUT_CHANNELS,
                    "in_channels": AUDIO_OUTPUT_CHANNELS,
                    "ch_mult": list(AUDIO_VAE_CH_MULT),
                    "num_res_blocks": AUDIO_VAE_RES_BLOCKS,
                    "attn_resolutions": [],
                    "resolution": 256,
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
        "resblock": "1",
        "stereo": True,
        "upsample_initial_channel": VOCODER_HIDDEN,
        "upsample_rates": VOCODER_UPSAMPLE_RATES,
        "upsample_kernel_sizes": VOCODER_UPSAMPLE_KERNELS,
        "resblock_kernel_sizes": VOCODER_RESBLOCK_KERNELS,
        "resblock_dilation_sizes": VOCODER_RESBLOCK_DILATIONS,
        "output_sampling_rate": 24000,
    },
    "upsampler": {
        "in_channels": VIDEO_LATENT_CHANNELS,
        "mid_channels": UPSAMPLER_MID_CHANNELS,
        "num_blocks_per_stage": UPSAMPLER_BLOCKS,
        "dims": 3,
        "spatial_upsample": True,
        "temporal_upsample": False,
        "spatial_scale": 2.0,
        "rational_resampler": True,
    },
}

# LTX-2.0's encoder: res_x / compress_space_res / res_x / compress_time_res / res_x / compress_all_res x2 ...
_DOWNSAMPLE_BLOCKS = ("compress_space_res", "compress_time_res", "compress_all_res", "compress_all_res")


def _encoder_blocks() -> list:
    blocks, channels = [], VIDEO_LATENT_CHANNELS
    for layers, name, out in zip(VAE_ENCODER_LAYERS, _DOWNSAMPLE_BLOCKS, VAE_ENCODER_CHANNELS, strict=False):
        blocks += [["res_x", {"num_layers": layers}], [name, {"multiplier": out // channels}]]
        channels = out
    return blocks + [["res_x", {"num_layers": VAE_ENCODER_LAYERS[-1]}]]


def _decoder_blocks() -> list:
    # Written in ltx-core's config order (the decoder reverses it): from the output side to the latent side.
    blocks = []
    for layers in VAE_DECODER_LAYERS[1:][::-1]:
        blocks += [["res_x", {"num_layers": layers}], ["compress_all", {"residual": True, "multiplier": 2}]]
    return blocks + [["res_x", {"num_layers": VAE_DECODER_LAYERS[0]}]]


LTX_CORE_CONFIG["vae"]["encoder_blocks"] = _encoder_blocks()
LTX_CORE_CONFIG["vae"]["decoder_blocks"] = _decoder_blocks()


# ---------------------------------------------------------------------------------------------------------------
# diffusers configs, derived from the ltx-core config above
# ---------------------------------------------------------------------------------------------------------------
def diffusers_transformer_config(config: dict = LTX_CORE_CONFIG) -> dict:
    t = config["transformer"]
    return dict(
        in_channels=t["in_channels"],
        out_channels=t["out_channels"],
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=t["num_attention_heads"],
        attention_head_dim=t["attention_head_dim"],
        cross_attention_dim=t["cross_attention_dim"],
        vae_scale_factors=(8, 32, 32),
        pos_embed_max_pos=t["positional_embedding_max_pos"][0],
        base_height=t["positional_embedding_max_pos"][1],
        base_width=t["positional_embedding_max_pos"][2],
        gated_attn=False,
        cross_attn_mod=False,
        audio_in_channels=t["audio_in_channels"],
        audio_out_channels=t["audio_out_channels"],
        audio_patch_size=1,
        audio_patch_size_t=1,
        audio_num_attention_heads=t["audio_num_attention_heads"],
        audio_attention_head_dim=t["audio_attention_head_dim"],
        audio_cross_attention_dim=t["audio_cross_attention_dim"],
        audio_scale_factor=4,
        audio_pos_embed_max_pos=t["audio_positional_embedding_max_pos"][0],
        audio_sampling_rate=config["audio_vae"]["model"]["params"]["sampling_rate"],
        audio_hop_length=config["audio_vae"]["preprocessing"]["stft"]["hop_length"],
        num_layers=t["num_layers"],
        activation_fn="gelu-approximate",
        qk_norm="rms_norm_across_heads",
        norm_elementwise_affine=False,
        norm_eps=t["norm_eps"],
        caption_channels=t["caption_channels"],
        attention_bias=True,
        attention_out_bias=True,
        rope_theta=t["positional_embedding_theta"],
        rope_double_precision=t["frequencies_precision"] == "float64",
        causal_offset=1,
        timestep_scale_multiplier=t["timestep_scale_multiplier"],
        cross_attn_timestep_scale_multiplier=t["av_ca_timestep_scale_multiplier"],
        rope_type=t["rope_type"],
        use_prompt_embeddings=True,
        # diffusers' 2.0 converter sets perturbed_attn=False, with which spatio_temporal_guidance_blocks is silently
        # ignored (the plain processor has no perturbation path); the twin enables it so STG can be compared.
        perturbed_attn=True,
    )


def diffusers_connectors_config(config: dict = LTX_CORE_CONFIG) -> dict:
    t = config["transformer"]
    return dict(
        caption_channels=t["caption_channels"],
        text_proj_in_factor=TEXT_LAYERS + 1,
        video_connector_num_attention_heads=t["connector_num_attention_heads"],
        video_connector_attention_head_dim=t["connector_attention_head_dim"],
        video_connector_num_layers=t["connector_num_layers"],
        video_connector_num_learnable_registers=CONNECTOR_REGISTERS,
        video_gated_attn=False,
        audio_connector_num_attention_heads=t["connector_num_attention_heads"],
        audio_connector_attention_head_dim=t["connector_attention_head_dim"],
        audio_connector_num_layers=t["connector_num_layers"],
        audio_connector_num_learnable_registers=CONNECTOR_REGISTERS,
        audio_gated_attn=False,
        connector_rope_base_seq_len=t["connector_positional_embedding_max_pos"][0],
        rope_theta=t["positional_embedding_theta"],
        rope_double_precision=t["frequencies_precision"] == "float64",
        causal_temporal_positioning=False,
        rope_type=t["rope_type"],
        per_modality_projections=False,
        proj_bias=False,
    )


def diffusers_vae_config(config: dict = LTX_CORE_CONFIG) -> dict:
    v = config["vae"]
    return dict(
        in_channels=v["in_channels"],
        out_channels=v["out_channels"],
        latent_channels=v["latent_channels"],
        block_out_channels=VAE_ENCODER_CHANNELS,
        down_block_types=("LTX2VideoDownBlock3D",) * 4,
        decoder_block_out_channels=VAE_DECODER_CHANNELS,
        layers_per_block=VAE_ENCODER_LAYERS,
        decoder_layers_per_block=VAE_DECODER_LAYERS,
        spatio_temporal_scaling=(True, True, True, True),
        decoder_spatio_temporal_scaling=(True, True, True),
        decoder_inject_noise=(False, False, False, False),
        downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
        upsample_type=("spatiotemporal", "spatiotemporal", "spatiotemporal"),
        upsample_residual=(True, True, True),
        upsample_factor=(2, 2, 2),
        timestep_conditioning=v["timestep_conditioning"],
        patch_size=v["patch_size"],
        patch_size_t=1,
        resnet_norm_eps=1e-6,
        encoder_causal=True,
        decoder_causal=v["causal_decoder"],
        encoder_spatial_padding_mode="zeros",
        decoder_spatial_padding_mode="reflect",
        spatial_compression_ratio=32,
        temporal_compression_ratio=8,
    )


def diffusers_audio_vae_config(config: dict = LTX_CORE_CONFIG) -> dict:
    a = config["audio_vae"]
    dd = a["model"]["params"]["ddconfig"]
    return dict(
        base_channels=dd["ch"],
        output_channels=dd["out_ch"],
        ch_mult=tuple(dd["ch_mult"]),
        num_res_blocks=dd["num_res_blocks"],
        attn_resolutions=None,
        in_channels=dd["in_channels"],
        resolution=dd["resolution"],
        latent_channels=dd["z_channels"],
        norm_type=dd["norm_type"],
        causality_axis=dd["causality_axis"],
        dropout=dd["dropout"],
        mid_block_add_attention=dd["mid_block_add_attention"],
        sample_rate=a["model"]["params"]["sampling_rate"],
        mel_hop_length=a["preprocessing"]["stft"]["hop_length"],
        is_causal=a["preprocessing"]["stft"]["causal"],
        mel_bins=dd["mel_bins"],
        double_z=dd["double_z"],
    )


def diffusers_vocoder_config(config: dict = LTX_CORE_CONFIG) -> dict:
    v = config["vocoder"]
    return dict(
        in_channels=AUDIO_OUTPUT_CHANNELS * AUDIO_MEL_BINS,
        hidden_channels=v["upsample_initial_channel"],
        out_channels=2,
        upsample_kernel_sizes=v["upsample_kernel_sizes"],
        upsample_factors=v["upsample_rates"],
        resnet_kernel_sizes=v["resblock_kernel_sizes"],
        resnet_dilations=v["resblock_dilation_sizes"],
        act_fn="leaky_relu",
        leaky_relu_negative_slope=0.1,
        antialias=False,
        final_act_fn="tanh",
        final_bias=True,
        output_sampling_rate=v["output_sampling_rate"],
    )


def diffusers_upsampler_config(config: dict = LTX_CORE_CONFIG) -> dict:
    u = config["upsampler"]
    return dict(
        in_channels=u["in_channels"],
        mid_channels=u["mid_channels"],
        num_blocks_per_stage=u["num_blocks_per_stage"],
        dims=u["dims"],
        spatial_upsample=u["spatial_upsample"],
        temporal_upsample=u["temporal_upsample"],
        rational_spatial_scale=u["spatial_scale"],
        use_rational_resampler=u["rational_resampler"],
    )


# ---------------------------------------------------------------------------------------------------------------
# Reference (ltx-core) models
# ---------------------------------------------------------------------------------------------------------------
def _side_config(side: str) -> dict:
    config = {key: dict(value) if isinstance(value, dict) else value for key, value in LTX_CORE_CONFIG.items()}
    config["vae"] = dict(config["vae"])
    config["vae"].pop("spatial_padding_mode")  # configurator defaults: encoder zeros, decoder reflect (as 2.0)
    return config


def _materialize(module: torch.nn.Module) -> torch.nn.Module:
    """Configurators build some parts on the meta device; give every tensor real (float32, CPU) storage."""
    if any(t.is_meta for t in list(module.parameters()) + list(module.buffers())):
        module = module.to_empty(device="cpu")
    return module.float().eval()


def _randomize(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Deterministic random weights, scaled so activations stay O(1) (every tensor in state_dict order)."""
    with torch.no_grad():
        for name, tensor in module.state_dict(keep_vars=True).items():
            if not torch.is_floating_point(tensor):
                continue
            leaf = name.rsplit(".", 1)[-1]
            noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float32)
            if leaf == "mean-of-means":
                value = 0.2 * noise
            elif leaf in ("std-of-means", "mean-of-stds"):
                value = 0.5 + torch.rand(tensor.shape, generator=generator)
            elif leaf == "learnable_registers":
                value = torch.rand(tensor.shape, generator=generator) * 2 - 1
            elif "scale_shift_table" in leaf:
                value = noise / math.sqrt(tensor.shape[-1])
            elif tensor.ndim >= 2:
                fan_in = tensor[0].numel() if tensor.ndim > 2 else tensor.shape[1]
                value = noise / math.sqrt(max(fan_in, 1))
            elif leaf == "weight":  # norm scales
                value = 1.0 + 0.1 * noise
            elif leaf == "bias":
                value = 0.05 * noise
            else:
                continue  # other buffers (filters, positions...) keep their constructed values
            tensor.copy_(value.to(tensor.dtype))


def _build_reference(seed: int):
    from ltx_core.model.audio_vae.model_configurator import (
        AudioDecoderConfigurator,
        AudioEncoderConfigurator,
        VocoderConfigurator,
    )
    from ltx_core.model.transformer.model import X0Model
    from ltx_core.model.transformer.model_configurator import LTXModelConfigurator
    from ltx_core.model.upsampler.model_configurator import LatentUpsamplerConfigurator
    from ltx_core.model.video_vae.model_configurator import VideoDecoderConfigurator, VideoEncoderConfigurator
    from ltx_core.text_encoders.gemma.embeddings_connector import (
        AudioEmbeddings1DConnectorConfigurator,
        Embeddings1DConnectorConfigurator,
    )
    from ltx_core.text_encoders.gemma.embeddings_processor import EmbeddingsProcessor
    from ltx_core.text_encoders.gemma.feature_extractor import FeatureExtractorV1

    config = _side_config("reference")
    gen = lambda k: torch.Generator().manual_seed(seed * 1000 + k)  # noqa: E731

    velocity = _materialize(LTXModelConfigurator.from_config(config))
    _randomize(velocity, gen(1))

    encoder = _materialize(VideoEncoderConfigurator.from_config(config))
    decoder = _materialize(VideoDecoderConfigurator.from_config(config))
    _randomize(encoder, gen(2))
    _randomize(decoder, gen(3))
    # One set of latent statistics, as in a checkpoint ("vae.per_channel_statistics.*")
    decoder.per_channel_statistics.load_state_dict(encoder.per_channel_statistics.state_dict())

    audio_encoder = _materialize(AudioEncoderConfigurator.from_config(config))
    audio_decoder = _materialize(AudioDecoderConfigurator.from_config(config))
    _randomize(audio_encoder, gen(4))
    _randomize(audio_decoder, gen(5))
    audio_encoder.per_channel_statistics.load_state_dict(audio_decoder.per_channel_statistics.state_dict())

    vocoder = _materialize(VocoderConfigurator.from_config(config))
    _randomize(vocoder, gen(6))

    upsampler = _materialize(LatentUpsamplerConfigurator.from_config(config["upsampler"]))
    _randomize(upsampler, gen(7))

    flat_dim = TEXT_HIDDEN * (TEXT_LAYERS + 1)
    embeddings_processor = EmbeddingsProcessor(
        feature_extractor=FeatureExtractorV1(torch.nn.Linear(flat_dim, TEXT_HIDDEN, bias=False), is_av=True),
        video_connector=Embeddings1DConnectorConfigurator.from_config(config),
        audio_connector=AudioEmbeddings1DConnectorConfigurator.from_config(config),
    )
    # ltx-core's connector builds its registers in bfloat16; the twin runs in float32 throughout.
    embeddings_processor = _materialize(embeddings_processor)
    for connector in (embeddings_processor.video_connector, embeddings_processor.audio_connector):
        connector.num_learnable_registers = CONNECTOR_REGISTERS
        connector.learnable_registers = torch.nn.Parameter(torch.zeros(CONNECTOR_REGISTERS, TEXT_HIDDEN))
    _randomize(embeddings_processor, gen(8))

    return dict(
        velocity=velocity,
        transformer=X0Model(velocity).eval(),
        video_encoder=encoder,
        video_decoder=decoder,
        audio_encoder=audio_encoder,
        audio_decoder=audio_decoder,
        vocoder=vocoder,
        upsampler=upsampler,
        embeddings_processor=embeddings_processor,
    )


# ---------------------------------------------------------------------------------------------------------------
# Checkpoint layout (as in Lightricks' single-file checkpoints) and conversion to diffusers
# ---------------------------------------------------------------------------------------------------------------
def reference_checkpoint(ref: dict) -> dict[str, torch.Tensor]:
    """The reference weights under the key prefixes of Lightricks' single-file checkpoint (whose comfy key
    filters in ltx_core/model/*/model_configurator.py strip them again)."""
    ckpt: dict[str, torch.Tensor] = {}

    def put(prefix: str, state: dict) -> None:
        for key, value in state.items():
            ckpt[prefix + key] = value.detach().clone()

    put("model.diffusion_model.", ref["velocity"].state_dict())
    encoder = {k: v for k, v in ref["video_encoder"].state_dict().items() if not k.startswith("per_channel")}
    decoder = {k: v for k, v in ref["video_decoder"].state_dict().items() if not k.startswith("per_channel")}
    put("vae.encoder.", encoder)
    put("vae.decoder.", decoder)
    put("vae.per_channel_statistics.", ref["video_encoder"].per_channel_statistics.state_dict())
    audio_enc = {k: v for k, v in ref["audio_encoder"].state_dict().items() if not k.startswith("per_channel")}
    audio_dec = {k: v for k, v in ref["audio_decoder"].state_dict().items() if not k.startswith("per_channel")}
    put("audio_vae.encoder.", audio_enc)
    put("audio_vae.decoder.", audio_dec)
    put("audio_vae.per_channel_statistics.", ref["audio_decoder"].per_channel_statistics.state_dict())
    put("vocoder.", ref["vocoder"].state_dict())
    processor = ref["embeddings_processor"].state_dict()
    for key, value in processor.items():
        if key.startswith("feature_extractor.aggregate_embed."):
            ckpt[key.replace("feature_extractor.", "text_embedding_projection.")] = value.detach().clone()
        elif key.startswith(("video_connector.", "audio_connector.")):
            modality = key.split("_", 1)[0]
            rest = key.split(".", 1)[1]
            ckpt[f"model.diffusion_model.{modality}_embeddings_connector.{rest}"] = value.detach().clone()
        else:
            raise KeyError(key)
    return ckpt


def _select(ckpt: dict, prefix: str) -> dict:
    return {k: v.clone() for k, v in ckpt.items() if k.startswith(prefix)}


def _rename(state: dict, renames: dict[str, str]) -> dict:
    out = {}
    for key, value in state.items():
        for old, new in renames.items():
            key = key.replace(old, new)
        out[key] = value
    return out


# The renames of diffusers' scripts/convert_ltx2_to_diffusers.py for the vocoder (single_file_utils has no converter
# for it). The text connectors' mapping is production's: pipelines.checkpoint_keys.convert_connectors_to_diffusers.
_VOCODER_RENAMES = {"ups": "upsamplers", "resblocks": "resnets", "conv_pre": "conv_in", "conv_post": "conv_out"}


def _load_strict(model: torch.nn.Module, state: dict) -> torch.nn.Module:
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        name = type(model).__name__
        raise RuntimeError(f"{name}: missing {sorted(missing)[:8]}, unexpected {sorted(unexpected)[:8]}")
    return model.float().eval()


def _build_diffusers(ckpt: dict) -> dict:
    from diffusers import (
        AutoencoderKLLTX2Audio,
        AutoencoderKLLTX2Video,
        LTX2VideoTransformer3DModel,
    )
    from diffusers.loaders.single_file_utils import (
        convert_ltx2_audio_vae_to_diffusers,
        convert_ltx2_transformer_to_diffusers,
        convert_ltx2_vae_to_diffusers,
    )
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder

    transformer_sd = convert_ltx2_transformer_to_diffusers(_select(ckpt, "model.diffusion_model."))
    transformer = _load_strict(LTX2VideoTransformer3DModel(**diffusers_transformer_config()), transformer_sd)

    vae = _load_strict(
        AutoencoderKLLTX2Video(**diffusers_vae_config()), convert_ltx2_vae_to_diffusers(_select(ckpt, "vae."))
    )
    audio_vae = _load_strict(
        AutoencoderKLLTX2Audio(**diffusers_audio_vae_config()),
        convert_ltx2_audio_vae_to_diffusers(_select(ckpt, "audio_vae.")),
    )
    vocoder_sd = {k.removeprefix("vocoder."): v for k, v in _select(ckpt, "vocoder.").items()}
    vocoder = _load_strict(LTX2Vocoder(**diffusers_vocoder_config()), _rename(vocoder_sd, _VOCODER_RENAMES))

    connectors = build_checkpoint_connectors(ckpt)
    return dict(transformer=transformer, vae=vae, audio_vae=audio_vae, vocoder=vocoder, connectors=connectors)


def build_checkpoint_connectors(ckpt: dict) -> torch.nn.Module:
    """diffusers' LTX2TextConnectors from a checkpoint's tensors through production's key mapping
    (pipelines/checkpoint_keys.py: what load_bundle_from_weights applies to the distilled checkpoint), loaded
    strictly into the twins' connectors config."""
    from diffusers.pipelines.ltx2 import LTX2TextConnectors

    from pipelines.checkpoint_keys import convert_connectors_to_diffusers

    state = {k: v.clone() for k, v in convert_connectors_to_diffusers(ckpt).items()}
    return _load_strict(LTX2TextConnectors(**diffusers_connectors_config()), state)


def _build_diffusers_upsampler(upsampler_state: dict):
    from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel

    return _load_strict(LTX2LatentUpsamplerModel(**diffusers_upsampler_config()), upsampler_state)


def fuse_lora(velocity: torch.nn.Module, lora: dict[str, torch.Tensor], scale: float = 1.0) -> torch.nn.Module:
    """A copy of the reference velocity model with W + scale * B @ A fused into every LoRA target
    (Lightricks' key format: ``diffusion_model.<module>.lora_A.weight`` / ``lora_B.weight``).

    This is the formula of ltx_core.loader.fuse_loras (``matmul(B * strength, A) + W``); that function itself only
    fuses into bfloat16/fp8 weights (float32 raises "Unsupported dtype"), hence this float32 re-statement."""
    import copy

    fused = copy.deepcopy(velocity)
    modules = dict(fused.named_modules())
    targets = {k[len("diffusion_model.") : -len(".lora_A.weight")] for k in lora if k.endswith(".lora_A.weight")}
    with torch.no_grad():
        for name in sorted(targets):
            module = modules[name]  # KeyError: the LoRA names a module the reference does not have
            a = lora[f"diffusion_model.{name}.lora_A.weight"].float()
            b = lora[f"diffusion_model.{name}.lora_B.weight"].float()
            module.weight += scale * (b @ a)
    return fused.eval()


# ---------------------------------------------------------------------------------------------------------------
# The twins
# ---------------------------------------------------------------------------------------------------------------
def reference_text_encoder(gemma, tokenizer, max_length: int = 1024):
    """ltx-core's GemmaTextEncoder (what its pipelines call ``encode(prompt)`` on) around a copy of the tiny Gemma and
    tokenizer: LTXVGemmaTokenizer normally loads from a folder, so its two attributes are set directly (left padding to
    ``max_length`` = 1024, as ltx-core's encoder configurator builds it)."""
    import copy

    from ltx_core.text_encoders.gemma.encoders.base_encoder import GemmaTextEncoder
    from ltx_core.text_encoders.gemma.tokenizer import LTXVGemmaTokenizer

    wrapped = LTXVGemmaTokenizer.__new__(LTXVGemmaTokenizer)
    wrapped.tokenizer = copy.deepcopy(tokenizer)
    wrapped.tokenizer.padding_side = "left"
    if wrapped.tokenizer.pad_token is None:
        wrapped.tokenizer.pad_token = wrapped.tokenizer.eos_token
    wrapped.max_length = max_length
    return GemmaTextEncoder(model=copy.deepcopy(gemma).eval(), tokenizer=wrapped, dtype=torch.float32).eval()


@dataclass(frozen=True)
class Reference:
    transformer: torch.nn.Module  # ltx_core X0Model (returns denoised x0)
    transformer_lora: torch.nn.Module  # X0Model over base + fused distilled LoRA (stage 2)
    video_encoder: torch.nn.Module
    video_decoder: torch.nn.Module
    audio_encoder: torch.nn.Module
    audio_decoder: torch.nn.Module
    vocoder: torch.nn.Module
    upsampler: torch.nn.Module
    embeddings_processor: torch.nn.Module
    text_encoder: torch.nn.Module  # ltx_core GemmaTextEncoder over a copy of the tiny Gemma (encode(prompt))
    components: object  # ltx_pipelines.utils.types.PipelineComponents (fp32, CPU, tiny latent channels)
    config: dict  # the ltx-core config every reference model was built from


@dataclass(frozen=True)
class Twins:
    seed: int
    reference: Reference
    bundle: object  # pipelines.loader.LTX2Bundle (LoRA adapter loaded, disabled)
    checkpoint: dict  # the reference weights in Lightricks' single-file key layout
    lora: dict  # the tiny distilled LoRA, Lightricks' key format

    @property
    def pipe(self):
        return self.bundle.pipe


@functools.lru_cache(maxsize=4)
def build_twins(seed: int = 0) -> Twins:
    from diffusers import LTX2ImageToVideoPipeline
    from ltx_core.model.transformer.model import X0Model
    from ltx_pipelines.utils.types import PipelineComponents

    from pipelines.loader import DISTILLED_ADAPTER, LTX2Bundle, _finish_bundle

    ref = _build_reference(seed)
    ckpt = reference_checkpoint(ref)
    parts = _build_diffusers(ckpt)
    upsampler = _build_diffusers_upsampler(ref["upsampler"].state_dict())

    tokenizer = _build_tokenizer()
    text_encoder = _build_text_encoder(len(tokenizer), tokenizer)
    pipe = LTX2ImageToVideoPipeline(
        scheduler=_build_scheduler(),
        vae=parts["vae"],
        audio_vae=parts["audio_vae"],
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        connectors=parts["connectors"],
        transformer=parts["transformer"],
        vocoder=parts["vocoder"],
    )
    lora = random_lightricks_lora(
        pipe.transformer, targets=_TINY_LORA_TARGETS, rank=TINY_LORA_RANK, seed=seed * 1000 + 9, std_a=0.1, std_b=0.1
    )
    transformer_lora = X0Model(fuse_lora(ref["velocity"], lora)).eval()
    pipe.load_lora_weights({k: v.clone() for k, v in lora.items()}, adapter_name=DISTILLED_ADAPTER)
    bundle = _finish_bundle(pipe, upsampler)
    assert isinstance(bundle, LTX2Bundle)

    components = PipelineComponents(dtype=torch.float32, device=torch.device("cpu"))
    text_encoder_ref = reference_text_encoder(text_encoder, tokenizer)
    components.video_latent_channels = VIDEO_LATENT_CHANNELS

    for module in list(ref.values()) + [transformer_lora, text_encoder_ref]:
        module.requires_grad_(False)
    reference_ns = Reference(
        transformer=ref["transformer"],
        transformer_lora=transformer_lora,
        video_encoder=ref["video_encoder"],
        video_decoder=ref["video_decoder"],
        audio_encoder=ref["audio_encoder"],
        audio_decoder=ref["audio_decoder"],
        vocoder=ref["vocoder"],
        upsampler=ref["upsampler"],
        embeddings_processor=ref["embeddings_processor"],
        text_encoder=text_encoder_ref,
        components=components,
        config=LTX_CORE_CONFIG,
    )
    return Twins(seed=seed, reference=reference_ns, bundle=bundle, checkpoint=ckpt, lora=lora)


# ---------------------------------------------------------------------------------------------------------------
# Running one transformer step on both sides from the same latents
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TransformerStep:
    """One denoising step's inputs, in both implementations' conventions.

    ``video_latent`` [B, F*H*W, C] and ``audio_latent`` [B, L, C*M] are patchified (identical layout on both
    sides: patch size 1, channels last); ``video_sigma_per_token`` [B, T] is sigma times the denoise mask
    (0 on clean, image-conditioned tokens); ``sigma`` [B] is the step's sigma.
    """

    video_latent: torch.Tensor
    audio_latent: torch.Tensor
    video_sigma_per_token: torch.Tensor
    audio_sigma_per_token: torch.Tensor
    sigma: torch.Tensor
    video_context: torch.Tensor
    audio_context: torch.Tensor
    latent_frames: int
    latent_height: int
    latent_width: int
    audio_frames: int
    fps: float


def reference_positions(step: TransformerStep) -> tuple[torch.Tensor, torch.Tensor]:
    """Video and audio RoPE positions the way ltx-core's pipelines build them (VideoLatentTools/AudioLatentTools)."""
    from ltx_core.components.patchifiers import AudioPatchifier, VideoLatentPatchifier
    from ltx_core.tools import AudioLatentTools, VideoLatentTools
    from ltx_core.types import AudioLatentShape, VideoLatentShape

    batch = step.video_latent.shape[0]
    video_tools = VideoLatentTools(
        patchifier=VideoLatentPatchifier(patch_size=1),
        target_shape=VideoLatentShape(
            batch=batch,
            channels=step.video_latent.shape[-1],
            frames=step.latent_frames,
            height=step.latent_height,
            width=step.latent_width,
        ),
        fps=step.fps,
    )
    video_positions = video_tools.create_initial_state(torch.device("cpu"), torch.float32).positions
    audio_tools = AudioLatentTools(
        patchifier=AudioPatchifier(patch_size=1),
        target_shape=AudioLatentShape(
            batch=batch,
            channels=AUDIO_LATENT_CHANNELS,
            frames=step.audio_frames,
            mel_bins=AUDIO_LATENT_MEL_BINS,
        ),
    )
    audio_positions = audio_tools.create_initial_state(torch.device("cpu"), torch.float32).positions
    return video_positions, audio_positions


def run_reference_transformer(
    model: torch.nn.Module, step: TransformerStep, perturbations=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Denoised (x0) video and audio tokens from an ltx-core X0Model. ``perturbations``: a
    BatchedPerturbationConfig (default: none)."""
    from ltx_core.guidance.perturbations import BatchedPerturbationConfig
    from ltx_core.model.transformer.modality import Modality

    video_positions, audio_positions = reference_positions(step)
    batch = step.video_latent.shape[0]
    video = Modality(
        latent=step.video_latent,
        sigma=step.sigma,
        timesteps=step.video_sigma_per_token.unsqueeze(-1),  # [B, T, 1], like denoise_mask * sigma
        positions=video_positions,
        context=step.video_context,
        context_mask=None,
    )
    audio = Modality(
        latent=step.audio_latent,
        sigma=step.sigma,
        timesteps=step.audio_sigma_per_token.unsqueeze(-1),
        positions=audio_positions,
        context=step.audio_context,
        context_mask=None,
    )
    perturbations = perturbations or BatchedPerturbationConfig.empty(batch)
    with torch.no_grad():
        return model(video, audio, perturbations)


def run_diffusers_transformer(
    transformer: torch.nn.Module, step: TransformerStep, **kwargs
) -> tuple[torch.Tensor, torch.Tensor]:
    """Denoised (x0) video and audio tokens from diffusers' LTX2VideoTransformer3DModel, called with what the
    reference semantics need: per-token timesteps scaled by 1000, the cross-modality sigma for the AV cross-attention
    modulation (``use_cross_timestep=True``: ltx-core 1.0.0 always does that), coords from the model's own RoPE
    helpers, and no text mask (the reference passes ``context_mask=None``). Extra kwargs (``isolate_modalities``,
    ``spatio_temporal_guidance_blocks``...) go to the transformer."""
    scale = transformer.config.timestep_scale_multiplier
    batch = step.video_latent.shape[0]
    video_coords = transformer.rope.prepare_video_coords(
        batch, step.latent_frames, step.latent_height, step.latent_width, step.video_latent.device, fps=step.fps
    )
    audio_coords = transformer.audio_rope.prepare_audio_coords(batch, step.audio_frames, step.audio_latent.device)
    with torch.no_grad():
        velocity, audio_velocity = transformer(
            hidden_states=step.video_latent,
            audio_hidden_states=step.audio_latent,
            encoder_hidden_states=step.video_context,
            audio_encoder_hidden_states=step.audio_context,
            timestep=step.video_sigma_per_token * scale,
            audio_timestep=step.audio_sigma_per_token * scale,
            sigma=step.sigma * scale,
            audio_sigma=step.sigma * scale,
            encoder_attention_mask=None,
            audio_encoder_attention_mask=None,
            video_coords=video_coords,
            audio_coords=audio_coords,
            fps=step.fps,
            use_cross_timestep=True,
            return_dict=False,
            **kwargs,
        )
    x0 = step.video_latent - step.video_sigma_per_token.unsqueeze(-1) * velocity
    audio_x0 = step.audio_latent - step.audio_sigma_per_token.unsqueeze(-1) * audio_velocity
    return x0, audio_x0


def make_step(
    seed: int = 0,
    *,
    batch: int = 1,
    latent_frames: int = 3,
    latent_height: int = 2,
    latent_width: int = 3,
    fps: float = 24.0,
    sigma: float | tuple[float, ...] = 0.6,
    text_tokens: int = 8,
    image_conditioned: bool = True,
) -> TransformerStep:
    """Random inputs for one image-to-video step: latent frame 0 clean (timestep 0), the rest at ``sigma`` (a float,
    or one per sample); audio sized like the pipeline sizes it for the clip's duration."""
    g = torch.Generator().manual_seed(seed)
    tokens = latent_frames * latent_height * latent_width
    num_frames = (latent_frames - 1) * 8 + 1
    audio_frames = round(num_frames / fps * 16000 / 160 / 4)
    video_latent = torch.randn(batch, tokens, VIDEO_LATENT_CHANNELS, generator=g)
    audio_latent = torch.randn(batch, audio_frames, AUDIO_TOKEN_CHANNELS, generator=g)
    mask = torch.ones(batch, tokens)
    if image_conditioned:
        mask[:, : latent_height * latent_width] = 0.0
    sigmas = torch.tensor(sigma, dtype=torch.float32).expand(batch).clone()  # one sigma, or one per sample
    return TransformerStep(
        video_latent=video_latent,
        audio_latent=audio_latent,
        video_sigma_per_token=sigmas[:, None] * mask,
        audio_sigma_per_token=sigmas[:, None].expand(batch, audio_frames).clone(),
        sigma=sigmas,
        video_context=torch.randn(batch, text_tokens, TEXT_HIDDEN, generator=g),
        audio_context=torch.randn(batch, text_tokens, TEXT_HIDDEN, generator=g),
        latent_frames=latent_frames,
        latent_height=latent_height,
        latent_width=latent_width,
        audio_frames=audio_frames,
        fps=fps,
    )


__all__ = [
    "LTX_CORE_CONFIG",
    "Reference",
    "TransformerStep",
    "Twins",
    "build_checkpoint_connectors",
    "build_twins",
    "fuse_lora",
    "make_step",
    "reference_checkpoint",
    "reference_positions",
    "run_diffusers_transformer",
    "run_reference_transformer",
]
