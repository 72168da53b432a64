"""The full-size LTX-2 19B (version "2.0") architecture with random weights: no download, honest timings.

Every config value below is read off diffusers' ``scripts/convert_ltx2_to_diffusers.py`` for
``--version 2.0`` (huggingface/diffusers, commit 58eb52c0803e; the functions named beside each dict),
checked against the constructor signatures of diffusers 0.42.1. The text encoder is Gemma-3-12B's
published architecture (google/gemma-3-12b-it, config.json: text_config + siglip vision_config), which is
what the converter's ``--text_encoder_model_id google/gemma-3-12b-it-qat-q4_0-unquantized`` loads.
Parameter counts match the published sizes (tests/unit/test_ltx2_19b_config.py checks them on the meta device).

Weights are random but tame: each component is built directly on the target device in the target dtype
with its library's own initialisation (PyTorch's kaiming-uniform for linears and convolutions, transformers'
normal(0.02) for Gemma), which keeps every layer's output no larger than its input, so activations stay
finite in bf16 and the kernels that run are exactly the ones real weights would run.
"""

from __future__ import annotations

import contextlib
import importlib
import time
from typing import Any, Iterator

import torch

VERSION = "2.0"

# get_ltx2_transformer_config("2.0")
TRANSFORMER_CONFIG = dict(
    in_channels=128,
    out_channels=128,
    patch_size=1,
    patch_size_t=1,
    num_attention_heads=32,
    attention_head_dim=128,
    cross_attention_dim=4096,
    vae_scale_factors=(8, 32, 32),
    pos_embed_max_pos=20,
    base_height=2048,
    base_width=2048,
    gated_attn=False,
    cross_attn_mod=False,
    audio_in_channels=128,
    audio_out_channels=128,
    audio_patch_size=1,
    audio_patch_size_t=1,
    audio_num_attention_heads=32,
    audio_attention_head_dim=64,
    audio_cross_attention_dim=2048,
    audio_scale_factor=4,
    audio_pos_embed_max_pos=20,
    audio_sampling_rate=16000,
    audio_hop_length=160,
    audio_gated_attn=False,
    audio_cross_attn_mod=False,
    num_layers=48,
    activation_fn="gelu-approximate",
    qk_norm="rms_norm_across_heads",
    norm_elementwise_affine=False,
    norm_eps=1e-6,
    caption_channels=3840,
    attention_bias=True,
    attention_out_bias=True,
    rope_theta=10000.0,
    rope_double_precision=True,
    causal_offset=1,
    timestep_scale_multiplier=1000,
    cross_attn_timestep_scale_multiplier=1000,
    rope_type="split",
    use_prompt_embeddings=True,
    perturbed_attn=False,
)

# get_ltx2_connectors_config("2.0")
CONNECTORS_CONFIG = dict(
    caption_channels=3840,
    text_proj_in_factor=49,  # Gemma-3-12B's 48 layers + the embeddings
    video_connector_num_attention_heads=30,
    video_connector_attention_head_dim=128,
    video_connector_num_layers=2,
    video_connector_num_learnable_registers=128,
    video_gated_attn=False,
    audio_connector_num_attention_heads=30,
    audio_connector_attention_head_dim=128,
    audio_connector_num_layers=2,
    audio_connector_num_learnable_registers=128,
    audio_gated_attn=False,
    connector_rope_base_seq_len=4096,
    rope_theta=10000.0,
    rope_double_precision=True,
    causal_temporal_positioning=False,
    rope_type="split",
    per_modality_projections=False,
    proj_bias=False,
)

# get_ltx2_video_vae_config("2.0") with the converter's default timestep_conditioning=False
VIDEO_VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=128,
    block_out_channels=(256, 512, 1024, 2048),
    down_block_types=("LTX2VideoDownBlock3D",) * 4,
    decoder_block_out_channels=(256, 512, 1024),
    layers_per_block=(4, 6, 6, 2, 2),
    decoder_layers_per_block=(5, 5, 5, 5),
    spatio_temporal_scaling=(True, True, True, True),
    decoder_spatio_temporal_scaling=(True, True, True),
    decoder_inject_noise=(False, False, False, False),
    downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
    upsample_type=("spatiotemporal", "spatiotemporal", "spatiotemporal"),
    upsample_residual=(True, True, True),
    upsample_factor=(2, 2, 2),
    timestep_conditioning=False,
    patch_size=4,
    patch_size_t=1,
    resnet_norm_eps=1e-6,
    encoder_causal=True,
    decoder_causal=False,
    encoder_spatial_padding_mode="zeros",
    decoder_spatial_padding_mode="reflect",
    spatial_compression_ratio=32,
    temporal_compression_ratio=8,
)

# get_ltx2_audio_vae_config("2.0")
AUDIO_VAE_CONFIG = dict(
    base_channels=128,
    output_channels=2,
    ch_mult=(1, 2, 4),
    num_res_blocks=2,
    attn_resolutions=None,
    in_channels=2,
    resolution=256,
    latent_channels=8,
    norm_type="pixel",
    causality_axis="height",
    dropout=0.0,
    mid_block_add_attention=False,
    sample_rate=16000,
    mel_hop_length=160,
    is_causal=True,
    mel_bins=64,
    double_z=True,
)

# get_ltx2_vocoder_config("2.0")
VOCODER_CONFIG = dict(
    in_channels=128,
    hidden_channels=1024,
    out_channels=2,
    upsample_kernel_sizes=[16, 15, 8, 4, 4],
    upsample_factors=[6, 5, 2, 2, 2],
    resnet_kernel_sizes=[3, 7, 11],
    resnet_dilations=[[1, 3, 5], [1, 3, 5], [1, 3, 5]],
    act_fn="leaky_relu",
    leaky_relu_negative_slope=0.1,
    antialias=False,
    final_act_fn="tanh",
    final_bias=True,
    output_sampling_rate=24000,
)

# get_ltx2_spatial_latent_upsampler_config("2.0")
LATENT_UPSAMPLER_CONFIG = dict(
    in_channels=128,
    mid_channels=1024,
    num_blocks_per_stage=4,
    dims=3,
    spatial_upsample=True,
    temporal_upsample=False,
    rational_spatial_scale=2.0,
    use_rational_resampler=True,
)

# Gemma-3-12B (google/gemma-3-12b-it config.json). RoPE settings are left at transformers' defaults: they
# change no shape and no cost. Special-token ids are the real ones; the byte tokenizer never emits them.
GEMMA3_12B_TEXT_CONFIG = dict(
    vocab_size=262208,
    hidden_size=3840,
    intermediate_size=15360,
    num_hidden_layers=48,
    num_attention_heads=16,
    num_key_value_heads=8,
    head_dim=256,
    query_pre_attn_scalar=256,
    sliding_window=1024,
    max_position_embeddings=131072,
)
GEMMA3_12B_VISION_CONFIG = dict(  # SigLIP so400m at 896 px
    hidden_size=1152,
    intermediate_size=4304,
    num_hidden_layers=27,
    num_attention_heads=16,
    image_size=896,
    patch_size=14,
    vision_use_head=False,
)
GEMMA3_12B_CONFIG = dict(
    mm_tokens_per_image=256, boi_token_index=255999, eoi_token_index=256000, image_token_index=262144
)

# Published sizes (../shared/ltx2-notes.md), in parameters.
PUBLISHED_PARAMS = {
    "transformer": 18.88e9,
    "connectors": 1.43e9,
    "vae": 1.22e9,
    "audio_vae": 0.05e9,
    "vocoder": 0.06e9,
    "latent_upsampler": 0.5e9,
    "text_encoder": 12.19e9,
}

# The stage-2 distilled LoRA (ltx-2-19b-distilled-lora-384): rank 384 on every attention and feed-forward
# projection of the 48 blocks (video, audio, and the audio<->video cross-attentions).
DISTILLED_LORA_RANK = 384
DISTILLED_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2")
_SEED = 19


@contextlib.contextmanager
def _built_as(device, dtype: torch.dtype) -> Iterator[None]:
    """New tensors land on ``device`` in ``dtype``: no float32 copy on the CPU first (that alone would be
    ~130 GB for this model), and buffers come out in the dtype ``from_pretrained(torch_dtype=...)`` gives."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def component_table(configs: dict[str, dict[str, Any]], vocoder_class: str = "LTX2Vocoder"):
    """A generation's components: name in the pipeline (or bundle) -> (module, class, its config)."""
    classes = {
        "transformer": ("diffusers", "LTX2VideoTransformer3DModel"),
        "connectors": ("diffusers.pipelines.ltx2", "LTX2TextConnectors"),
        "vae": ("diffusers", "AutoencoderKLLTX2Video"),
        "audio_vae": ("diffusers", "AutoencoderKLLTX2Audio"),
        "vocoder": ("diffusers.pipelines.ltx2.vocoder", vocoder_class),
        "latent_upsampler": ("diffusers.pipelines.ltx2.latent_upsampler", "LTX2LatentUpsamplerModel"),
    }
    return {name: (*classes[name], configs[name]) for name in classes}


_DIFFUSERS_COMPONENTS: dict[str, tuple[str, str, dict[str, Any]]] = component_table(
    dict(
        transformer=TRANSFORMER_CONFIG,
        connectors=CONNECTORS_CONFIG,
        vae=VIDEO_VAE_CONFIG,
        audio_vae=AUDIO_VAE_CONFIG,
        vocoder=VOCODER_CONFIG,
        latent_upsampler=LATENT_UPSAMPLER_CONFIG,
    )
)
COMPONENTS = (*_DIFFUSERS_COMPONENTS, "text_encoder")


def build_text_encoder(tokenizer=None):
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3TextConfig, SiglipVisionConfig

    special = {}
    if tokenizer is not None:
        special = dict(
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    config = Gemma3Config(
        text_config=Gemma3TextConfig(**GEMMA3_12B_TEXT_CONFIG, **special),
        vision_config=SiglipVisionConfig(**GEMMA3_12B_VISION_CONFIG),
        **GEMMA3_12B_CONFIG,
    )
    return Gemma3ForConditionalGeneration(config)


def build_tokenizer():
    from .tiny import _build_tokenizer

    # Byte-level: every id is < 264, well inside Gemma's vocabulary; model_max_length is 1024 as in LTX-2.
    return _build_tokenizer()


def build_component(name: str, device="meta", dtype: torch.dtype = torch.bfloat16):
    """One full-size component with random weights on ``device`` (``meta``: shapes only, no memory)."""
    with _built_as(device, dtype):
        return build_listed(_DIFFUSERS_COMPONENTS, name).eval()


def build_listed(components: dict[str, tuple[str, str, dict[str, Any]]], name: str, tokenizer=None):
    """``name`` from a generation's (module, class, config) table; the text encoder is Gemma 3 12B for each."""
    if name == "text_encoder":
        return build_text_encoder(tokenizer)
    module, class_name, config = components[name]
    return getattr(importlib.import_module(module), class_name)(**config)


def count_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def build_random_19b_bundle(device, dtype: torch.dtype = torch.bfloat16, *, timings: dict | None = None):
    """LTX-2 19B with random weights, built on ``device``, wrapped like the real weights are
    (``pipelines.loader.LTX2Bundle`` through the same ``_finish_bundle``). ``timings`` collects seconds per part."""
    return build_random_bundle(_DIFFUSERS_COMPONENTS, _SEED, DISTILLED_LORA_RANK, device, dtype, timings)


def build_random_bundle(
    components: dict[str, tuple[str, str, dict[str, Any]]],
    seed: int,
    lora_rank: int,
    device,
    dtype: torch.dtype,
    timings: dict | None = None,
):
    """A generation's full-size pipeline with random weights from its component table, with a distilled LoRA
    of ``lora_rank`` on every attention and feed-forward projection, as its real weights are wrapped."""
    from diffusers import LTX2ImageToVideoPipeline

    from .loader import DISTILLED_ADAPTER, _finish_bundle
    from .tiny import _build_scheduler, random_lightricks_lora

    timings = {} if timings is None else timings
    torch.manual_seed(seed)
    if torch.device(device).type == "cuda":
        torch.cuda.manual_seed_all(seed)
    parts = {}
    tokenizer = build_tokenizer()
    for name in (*components, "text_encoder"):
        start = time.perf_counter()
        with _built_as(device, dtype):
            parts[name] = build_listed(components, name, tokenizer).eval()
        _synchronize(device)
        timings[name] = time.perf_counter() - start
    upsampler = parts.pop("latent_upsampler")
    pipe: Any = LTX2ImageToVideoPipeline(scheduler=_build_scheduler(), tokenizer=tokenizer, **parts)
    start = time.perf_counter()
    lora = random_lightricks_lora(
        pipe.transformer,
        targets=DISTILLED_LORA_TARGETS,
        rank=lora_rank,
        seed=seed,
        within="transformer_blocks.",
        device=device,
        dtype=dtype,
    )
    pipe.load_lora_weights(lora, adapter_name=DISTILLED_ADAPTER)
    del lora
    _synchronize(device)
    timings["distilled_lora"] = time.perf_counter() - start
    return _finish_bundle(pipe, upsampler)


def _synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def audio_tokens(num_frames: int, fps: float, config: dict = TRANSFORMER_CONFIG) -> int:
    """Audio latents for a clip, as the pipeline sizes them (16 kHz / hop 160 / x4 = 25 per second)."""
    per_second = config["audio_sampling_rate"] / config["audio_hop_length"] / config["audio_scale_factor"]
    return round(num_frames / fps * per_second)


def video_tokens(width: int, height: int, num_frames: int, config: dict = TRANSFORMER_CONFIG) -> int:
    temporal, spatial_h, spatial_w = config["vae_scale_factors"]
    patch, patch_t = config["patch_size"], config["patch_size_t"]
    frames = (num_frames - 1) // temporal + 1
    return (frames // patch_t) * (height // spatial_h // patch) * (width // spatial_w // patch)


def _widths(config: dict) -> tuple[int, int]:
    video = config["num_attention_heads"] * config["attention_head_dim"]
    audio = config["audio_num_attention_heads"] * config["audio_attention_head_dim"]
    return video, audio


def transformer_attention_flops(config: dict, video: int, audio: int, text: int, batch: int = 1) -> float:
    """The attention matmuls of one forward: 4 * queries * keys * width (scores, then the weighted sum) for
    video and audio self-attention, their text cross-attentions, and the a2v and v2a cross-attentions
    (both at the audio attention width)."""
    d, a = _widths(config)
    per_layer = 4 * (d * (video * video + video * text) + a * (audio * audio + audio * text + 2 * video * audio))
    return batch * config["num_layers"] * per_layer


def transformer_forward_flops(config: dict, video: int, audio: int, text: int, batch: int = 1) -> float:
    """Matmul FLOPs of one LTX2VideoTransformer3DModel forward (2 per multiply-add; norms, RoPE, adaLN
    and activations left out: they are well under 1 %).

    Linears per block, video stream (width D): self-attention q/k/v/out, text cross-attention q/out, the
    feed-forward (4x), the a2v cross-attention's q/out and the v2a cross-attention's k/v (both at the
    audio attention width A). Audio stream likewise at width A. Text tokens pass the cross-attentions'
    k/v, once per layer, and the two caption projections (2-layer MLPs) once, where the transformer has them
    (``use_prompt_embeddings``: LTX-2.3 projects the text in its connectors instead)."""
    d, a = _widths(config)
    ff = 4  # diffusers' FeedForward default mult
    video_linear = 4 * d * d + 2 * d * d + 2 * ff * d * d + 2 * d * a + 2 * d * a
    audio_linear = 4 * a * a + 2 * a * a + 2 * ff * a * a + 2 * a * a + 2 * a * a
    text_linear = 2 * config["cross_attention_dim"] * d + 2 * config["audio_cross_attention_dim"] * a
    linear = config["num_layers"] * 2 * (video * video_linear + audio * audio_linear + text * text_linear)
    caption = 2 * text * config["caption_channels"] * (d + a) + 2 * text * (d * d + a * a)
    if not config.get("use_prompt_embeddings", True):
        caption = 0
    return batch * (linear + caption) + transformer_attention_flops(config, video, audio, text, batch)
