"""Tiny random LTX-2.3 models built twice, with identical weights: once in Lightricks' reference (ltx-core 1.0.0)
from an LTX-2.3-style config, once in diffusers through the server's own single-file loading code.

What makes the config LTX-2.3's (each a switch ltx-core's configurators read from a 2.3 checkpoint's config):
gated attention in the transformer and the text connectors (``apply_gated_attention``,
``connector_apply_gated_attention``), the prompt AdaLN (``cross_attention_adaln``: 9 modulation parameters per
block and a timestep-modulated cross-attention), the text projected per modality before the connectors
(``caption_proj_before_connector`` and its companions: ltx-core's FeatureExtractorV2, no caption projection in
the transformer), connectors deeper than 2.0's and sized to each modality, the rebuilt video VAE (a decoder of
four upsamplers: two spatio-temporal, one temporal, one spatial; no residual upsamplers; zero padding) and the
vocoder with bandwidth extension (a 16 kHz AMP1/SnakeBeta vocoder, then a second generator on its log-mel
adding the 16 -> 48 kHz band). The audio VAE is 2.0's, as in the real release; the spatial upscaler has 2.0's
layout with a plain 2x resampler.

The reference models are created by ltx-core's configurators from that config and given random weights; their
state dicts are written under the key prefixes of Lightricks' single-file checkpoints, and the diffusers
models come from ``pipelines.single_file.build_components``: the config read by ``pipelines.ltx_config`` and
the tensors renamed by diffusers' converters plus pipelines/checkpoint_keys.py, loaded strictly. So these
twins test the code that loads a real LTX-2.3 checkpoint.
"""

from __future__ import annotations

import copy
import functools
import json

import torch

from pipelines.tiny import (
    _TINY_LORA_TARGETS,
    TEXT_HIDDEN,
    TEXT_LAYERS,
    TINY_LORA_RANK,
    _build_scheduler,
    _build_text_encoder,
    _build_tokenizer,
    random_lightricks_lora,
)

from . import reference  # noqa: F401  (before any ltx_core import)
from .twins import (
    AUDIO_HEAD_DIM,
    AUDIO_HEADS,
    LTX_CORE_CONFIG,
    VIDEO_HEAD_DIM,
    VIDEO_HEADS,
    VIDEO_LATENT_CHANNELS,
    Reference,
    Twins,
    _materialize,
    _randomize,
    fuse_lora,
    make_step,
    reference_checkpoint,
    reference_text_encoder,
)

MODEL_VERSION = "2.3.0"  # what the tiny checkpoints write in their metadata: any "2.3..." is LTX-2.3
CONNECTOR_LAYERS = 3  # deeper than the 2.0 twins' 2, as 2.3's 8 are deeper than 2.0's 2
VIDEO_INNER, AUDIO_INNER = VIDEO_HEADS * VIDEO_HEAD_DIM, AUDIO_HEADS * AUDIO_HEAD_DIM
VAE_DECODER_BASE = 4  # ltx-core: the decoder starts at base x 8 channels and ends at base

# The rebuilt VAE's decoder, latent side first: res_x, then four (upsampler, res_x) pairs. Channel reductions
# 2, 1, 2, 2 as in diffusers' LTX-2.3 config (decoder_block_out_channels 256/512/512/1024, factors 2/2/1/2).
_DECODER_LATENT_FIRST = [
    ["res_x", {"num_layers": 1}],
    ["compress_all", {"multiplier": 2, "residual": False}],
    ["res_x", {"num_layers": 1}],
    ["compress_all", {"multiplier": 1, "residual": False}],
    ["res_x", {"num_layers": 1}],
    ["compress_time", {"multiplier": 2}],
    ["res_x", {"num_layers": 1}],
    ["compress_space", {"multiplier": 2}],
    ["res_x", {"num_layers": 1}],
]


def _encoder_blocks() -> list:
    """2.0's encoder layout, the last downsampler keeping its width (2.3: 256/512/1024/1024 from 128)."""
    blocks = copy.deepcopy(LTX_CORE_CONFIG["vae"]["encoder_blocks"])
    blocks[-2][1]["multiplier"] = 1
    return blocks


def _vocoder_config() -> dict:
    amp = dict(
        resblock="AMP1",
        stereo=True,
        activation="snakebeta",
        use_tanh_at_final=False,
        use_bias_at_final=False,
        resblock_kernel_sizes=[3],
        resblock_dilation_sizes=[[1, 3, 5]],
    )
    return {
        # 16 kHz mel at hop 160 -> 160 samples per frame: 5 x 2^5, as the real 2.3 vocoder (hidden 1536 there).
        "vocoder": {**amp, "upsample_initial_channel": 64, "upsample_rates": [5, 2, 2, 2, 2, 2],
                    "upsample_kernel_sizes": [11, 4, 4, 4, 4, 4]},  # fmt: skip
        # Its own 64-bin log-mel at hop 80 (200 frames/s) -> 240 samples per frame = 48 kHz (hidden 512 there).
        "bwe": {**amp, "upsample_initial_channel": 32, "upsample_rates": [6, 5, 2, 2, 2],
                "upsample_kernel_sizes": [12, 11, 4, 4, 4], "input_sampling_rate": 16000,
                "output_sampling_rate": 48000, "hop_length": 80, "n_fft": 512, "num_mels": 64},  # fmt: skip
    }


def _ltx_core_config_2_3() -> dict:
    config = copy.deepcopy(LTX_CORE_CONFIG)
    config["transformer"].update(
        apply_gated_attention=True,
        cross_attention_adaln=True,
        caption_proj_before_connector=True,
        caption_projection_first_linear=False,
        caption_proj_input_norm=False,
        caption_projection_second_linear=False,
        connector_apply_gated_attention=True,
        connector_num_layers=CONNECTOR_LAYERS,
        # Each connector as wide as its modality's transformer (2.3: 32 x 128 video, 32 x 64 audio).
        connector_num_attention_heads=VIDEO_HEADS,
        connector_attention_head_dim=VIDEO_HEAD_DIM,
        audio_connector_num_attention_heads=AUDIO_HEADS,
        audio_connector_attention_head_dim=AUDIO_HEAD_DIM,
        audio_connector_num_layers=CONNECTOR_LAYERS,
    )
    config["vae"].update(
        encoder_blocks=_encoder_blocks(),
        decoder_blocks=list(reversed(_DECODER_LATENT_FIRST)),  # ltx-core's config order: pixels side first
        decoder_base_channels=VAE_DECODER_BASE,
        spatial_padding_mode="zeros",
    )
    config["vocoder"] = _vocoder_config()
    # The 2.3 spatial upscaler: 2.0's layout with a plain (non-rational) 2x resampler (diffusers' conversion
    # configs for "2.3": use_rational_resampler False).
    config["upsampler"] = dict(config["upsampler"], rational_resampler=False)
    return config


LTX_CORE_CONFIG_2_3 = _ltx_core_config_2_3()


def checkpoint_metadata(config: dict = LTX_CORE_CONFIG_2_3) -> dict[str, str]:
    """The metadata a Lightricks single-file checkpoint carries: its config and model_version."""
    return {"config": json.dumps(config), "model_version": MODEL_VERSION}


def upsampler_metadata() -> dict[str, str]:
    return {"config": json.dumps(LTX_CORE_CONFIG_2_3["upsampler"])}


def _build_reference(seed: int) -> dict:
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
    from ltx_core.text_encoders.gemma.feature_extractor import FeatureExtractorV2

    config = LTX_CORE_CONFIG_2_3
    gen = lambda k: torch.Generator().manual_seed(seed * 1000 + 100 + k)  # noqa: E731

    velocity = _materialize(LTXModelConfigurator.from_config(config))
    _randomize(velocity, gen(1))
    encoder = _materialize(VideoEncoderConfigurator.from_config(config))
    decoder = _materialize(VideoDecoderConfigurator.from_config(config))
    _randomize(encoder, gen(2))
    _randomize(decoder, gen(3))
    decoder.per_channel_statistics.load_state_dict(encoder.per_channel_statistics.state_dict())
    audio_encoder = _materialize(AudioEncoderConfigurator.from_config(config))
    audio_decoder = _materialize(AudioDecoderConfigurator.from_config(config))
    _randomize(audio_encoder, gen(4))
    _randomize(audio_decoder, gen(5))
    audio_encoder.per_channel_statistics.load_state_dict(audio_decoder.per_channel_statistics.state_dict())
    vocoder = _materialize(VocoderConfigurator.from_config(config))
    _randomize(vocoder, gen(6))
    _tame_vocoder(vocoder)
    upsampler = _materialize(LatentUpsamplerConfigurator.from_config(config["upsampler"]))
    _randomize(upsampler, gen(7))

    # ltx-core's encoder configurator sizes FeatureExtractorV2 for Gemma 3 12B; the twins' Gemma is TEXT_HIDDEN wide.
    flat_dim = TEXT_HIDDEN * (TEXT_LAYERS + 1)
    embeddings_processor = EmbeddingsProcessor(
        feature_extractor=FeatureExtractorV2(
            video_aggregate_embed=torch.nn.Linear(flat_dim, VIDEO_INNER, bias=True),
            embedding_dim=TEXT_HIDDEN,
            audio_aggregate_embed=torch.nn.Linear(flat_dim, AUDIO_INNER, bias=True),
        ),
        video_connector=Embeddings1DConnectorConfigurator.from_config(config),
        audio_connector=AudioEmbeddings1DConnectorConfigurator.from_config(config),
    )
    embeddings_processor = _materialize(embeddings_processor)  # its registers are built in bfloat16
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


def _tame_vocoder(vocoder: torch.nn.Module) -> None:
    """Random weights through eleven upsampling layers grow a signal ~10^4-fold, and SnakeBeta's sin() of such
    values turns float32 rounding into differences of 1e-3: every sample would clip, or the comparison would
    measure chaos. So, on a probe mel, each upsampler is scaled to an output of std 1 (in order, each after the
    ones before it), each residual branch's last convolution to a tenth, and each generator's last convolution
    to a waveform of std 0.3 (the 16 kHz one) and a residual of std 0.1 (the extension's)."""
    probe = 0.3 * torch.randn(1, 2, 24, 64, generator=torch.Generator().manual_seed(99))
    inner, extender = vocoder.vocoder, vocoder.bwe_generator
    with torch.no_grad():
        vocoder.mel_stft.mel_basis.abs_()  # a filterbank is non-negative, or every mel clamps to the floor
        for generator in (inner, extender):
            for block in generator.resblocks:
                for conv in block.convs2:
                    conv.weight.mul_(0.1)
        inner.apply_final_activation = False
        _unit_upsamplers(inner, lambda: inner(probe))
        inner.conv_post.weight.mul_(0.3 / inner(probe).std())
        inner.apply_final_activation = True
        mel = lambda: vocoder._compute_mel(inner(probe)).transpose(2, 3)  # noqa: E731
        _unit_upsamplers(extender, lambda: extender(mel()))
        extender.conv_post.weight.mul_(0.1 / extender(mel()).std())


def _output_of(module: torch.nn.Module, run) -> torch.Tensor:
    seen: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _module, _args, output: seen.append(output))
    run()
    handle.remove()
    return seen[0]


def _unit_upsamplers(generator: torch.nn.Module, run) -> None:
    for upsampler in generator.ups:
        scale = 1.0 / _output_of(upsampler, run).std()
        upsampler.weight.mul_(scale)
        upsampler.bias.mul_(scale)


def reference_checkpoint_2_3(ref: dict) -> dict[str, torch.Tensor]:
    """As twins.reference_checkpoint, with FeatureExtractorV2's two projections under their checkpoint names."""
    processor = ref["embeddings_processor"]
    v1_view = dict(ref)
    v1_view["embeddings_processor"] = _ConnectorsOnly(processor)
    ckpt = reference_checkpoint(v1_view)
    for key, value in processor.feature_extractor.state_dict().items():
        ckpt[f"text_embedding_projection.{key}"] = value.detach().clone()
    return ckpt


class _ConnectorsOnly(torch.nn.Module):
    """The processor's two connectors, for reference_checkpoint (which names V1's projection only)."""

    def __init__(self, processor: torch.nn.Module) -> None:
        super().__init__()
        self.video_connector = processor.video_connector
        self.audio_connector = processor.audio_connector


@functools.lru_cache(maxsize=2)
def build_twins_2_3(seed: int = 0) -> Twins:
    from diffusers import LTX2ImageToVideoPipeline
    from ltx_core.model.transformer.model import X0Model
    from ltx_pipelines.utils.types import PipelineComponents

    from pipelines.loader import DISTILLED_ADAPTER, _finish_bundle
    from pipelines.single_file import build_components, build_latent_upsampler

    ref = _build_reference(seed)
    ckpt = reference_checkpoint_2_3(ref)
    parts = build_components(
        {k: v.clone() for k, v in ckpt.items()}, LTX_CORE_CONFIG_2_3, text_hidden=TEXT_HIDDEN, text_layers=TEXT_LAYERS
    )
    upsampler = build_latent_upsampler(ref["upsampler"].state_dict(), LTX_CORE_CONFIG_2_3["upsampler"], torch.float32)
    tokenizer = _build_tokenizer()
    text_encoder = _build_text_encoder(len(tokenizer), tokenizer)
    pipe = LTX2ImageToVideoPipeline(
        scheduler=_build_scheduler(), text_encoder=text_encoder, tokenizer=tokenizer, **parts
    )
    lora = random_lightricks_lora(
        pipe.transformer, targets=_TINY_LORA_TARGETS, rank=TINY_LORA_RANK, seed=seed * 1000 + 109, std_a=0.1, std_b=0.1
    )
    transformer_lora = X0Model(fuse_lora(ref["velocity"], lora)).eval()
    pipe.load_lora_weights({k: v.clone() for k, v in lora.items()}, adapter_name=DISTILLED_ADAPTER)
    bundle = _finish_bundle(pipe, upsampler)

    components = PipelineComponents(dtype=torch.float32, device=torch.device("cpu"))
    components.video_latent_channels = VIDEO_LATENT_CHANNELS
    text_encoder_ref = reference_text_encoder(text_encoder, tokenizer)
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
        config=LTX_CORE_CONFIG_2_3,
    )
    return Twins(seed=seed, reference=reference_ns, bundle=bundle, checkpoint=ckpt, lora=lora)


def make_step_2_3(seed: int = 0, **kwargs):
    """twins.make_step with each modality's context as wide as its transformer (2.3 projects before the
    connectors, so the transformer receives contexts of its own width)."""
    import dataclasses

    step = make_step(seed, **kwargs)
    g = torch.Generator().manual_seed(seed + 500)
    batch, tokens = step.video_context.shape[:2]
    return dataclasses.replace(
        step,
        video_context=torch.randn(batch, tokens, VIDEO_INNER, generator=g),
        audio_context=torch.randn(batch, tokens, AUDIO_INNER, generator=g),
    )


__all__ = [
    "LTX_CORE_CONFIG_2_3",
    "MODEL_VERSION",
    "build_twins_2_3",
    "checkpoint_metadata",
    "make_step_2_3",
    "reference_checkpoint_2_3",
    "upsampler_metadata",
]
