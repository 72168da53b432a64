"""A tiny, randomly initialised LTX-2 image-to-video pipeline built entirely in code.

It uses the real diffusers/transformers classes, so every code path the 19B model takes (text encoder ->
connectors -> audio/video transformer -> video VAE + audio VAE + vocoder) runs, but with widths small
enough for a 2-core CPU. What must match the real model is kept: x32 spatial / x8 temporal video
compression (so size snapping and frame counts behave like production), 16 kHz mel with hop 160 and a
24 kHz vocoder (so audio length lines up with video length), and the dev scheduler's shift settings.
No network and no files: weights come from fixed seeds, so two builds are bit-identical.
"""

from __future__ import annotations

import torch

# Seeds per component: a different seed each keeps components from sharing identical weight streams.
_SEED_TEXT_ENCODER = 0
_SEED_CONNECTORS = 1
_SEED_TRANSFORMER = 2
_SEED_VAE = 3
_SEED_AUDIO_VAE = 4
_SEED_VOCODER = 5

TEXT_HIDDEN = 16
TEXT_LAYERS = 2
VIDEO_LATENT_CHANNELS = 8
AUDIO_LATENT_CHANNELS = 2
AUDIO_MEL_BINS = 16
AUDIO_OUTPUT_CHANNELS = 2  # stereo, like the real audio VAE
TINY_ENHANCE_NEW_TOKENS = 32


def _build_tokenizer():
    from transformers import GemmaTokenizer

    # Special tokens first, then the 256 byte-fallback tokens so every UTF-8 string can be encoded
    # with merges=[] (no BPE merges: one token per byte, which is all a random model needs).
    specials = [
        "<pad>",
        "<eos>",
        "<bos>",
        "<unk>",
        "<mask>",
        "<start_of_image>",
        "<end_of_image>",
        "<image_soft_token>",
    ]
    vocab = {token: index for index, token in enumerate(specials)}
    for byte in range(256):
        vocab[f"<0x{byte:02X}>"] = len(vocab)
    tokenizer = GemmaTokenizer(vocab=vocab, merges=[])
    tokenizer.model_max_length = 1024
    return tokenizer


def _build_text_encoder(vocab_size: int, tokenizer):
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3TextConfig, SiglipVisionConfig

    text_config = Gemma3TextConfig(
        vocab_size=vocab_size,
        hidden_size=TEXT_HIDDEN,
        intermediate_size=32,
        num_hidden_layers=TEXT_LAYERS,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        max_position_embeddings=2048,
        sliding_window=64,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    # The vision tower is never used for text encoding, but Gemma3ForConditionalGeneration requires one.
    vision_config = SiglipVisionConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=16,
        patch_size=4,
    )
    config = Gemma3Config(
        text_config=text_config,
        vision_config=vision_config,
        mm_tokens_per_image=4,
        boi_token_index=tokenizer.convert_tokens_to_ids("<start_of_image>"),
        eoi_token_index=tokenizer.convert_tokens_to_ids("<end_of_image>"),
        image_token_index=tokenizer.convert_tokens_to_ids("<image_soft_token>"),
    )
    torch.manual_seed(_SEED_TEXT_ENCODER)
    model = Gemma3ForConditionalGeneration(config).eval()
    # The most tokens prompt enhancement (pipelines/enhance.py) writes with it: random weights write gibberish,
    # and Lightricks' 512 tokens of it would cost seconds per request.
    model.generation_config.max_new_tokens = TINY_ENHANCE_NEW_TOKENS
    return model


def _build_connectors():
    from diffusers.pipelines.ltx2 import LTX2TextConnectors

    torch.manual_seed(_SEED_CONNECTORS)
    return LTX2TextConnectors(
        caption_channels=TEXT_HIDDEN,
        text_proj_in_factor=TEXT_LAYERS + 1,  # the pipeline stacks every hidden state incl. embeddings
        video_connector_num_attention_heads=2,
        video_connector_attention_head_dim=8,
        video_connector_num_layers=1,
        video_connector_num_learnable_registers=None,
        audio_connector_num_attention_heads=2,
        audio_connector_attention_head_dim=8,
        audio_connector_num_layers=1,
        audio_connector_num_learnable_registers=None,
        connector_rope_base_seq_len=32,
        rope_double_precision=False,
        rope_type="split",
    )


def _build_transformer():
    from diffusers import LTX2VideoTransformer3DModel

    torch.manual_seed(_SEED_TRANSFORMER)
    # One layer and one narrow head: at 720x1280x181 there are ~22k video tokens and CFG doubles the
    # batch, so self-attention cost (tokens^2 x head_dim) is what bounds a CPU step.
    return LTX2VideoTransformer3DModel(
        in_channels=VIDEO_LATENT_CHANNELS,
        out_channels=VIDEO_LATENT_CHANNELS,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=1,
        attention_head_dim=12,
        cross_attention_dim=12,
        audio_in_channels=AUDIO_LATENT_CHANNELS * (AUDIO_MEL_BINS // 4),
        audio_out_channels=AUDIO_LATENT_CHANNELS * (AUDIO_MEL_BINS // 4),
        audio_num_attention_heads=1,
        audio_attention_head_dim=8,
        audio_cross_attention_dim=8,
        num_layers=1,
        caption_channels=TEXT_HIDDEN,
        rope_double_precision=False,
        rope_type="split",
        perturbed_attn=False,
    )


def _build_video_vae():
    from diffusers import AutoencoderKLLTX2Video

    torch.manual_seed(_SEED_VAE)
    # Same block layout as the real VAE (patch 4, then 2x2x2 steps) so compression is the real x32/x8;
    # only the widths shrink. The decoder's last stage runs at full output resolution / 4 for every frame,
    # so it gets the fewest channels and no resnets there.
    vae = AutoencoderKLLTX2Video(
        in_channels=3,
        out_channels=3,
        latent_channels=VIDEO_LATENT_CHANNELS,
        block_out_channels=(4, 4, 8, 8),
        down_block_types=("LTX2VideoDownBlock3D",) * 4,
        layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, True, True),
        downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
        decoder_block_out_channels=(2, 4, 8),
        decoder_layers_per_block=(0, 0, 0, 1),
        decoder_spatio_temporal_scaling=(True, True, True),
        decoder_inject_noise=(False, False, False, False),
        upsample_type=("spatiotemporal", "spatiotemporal", "spatiotemporal"),
        upsample_residual=(False, False, False),
        upsample_factor=(2, 2, 2),
        timestep_conditioning=False,
        patch_size=4,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
        spatial_compression_ratio=32,
        temporal_compression_ratio=8,
    )
    return vae.eval()


def _build_audio_vae():
    from diffusers import AutoencoderKLLTX2Audio

    torch.manual_seed(_SEED_AUDIO_VAE)
    return AutoencoderKLLTX2Audio(
        base_channels=AUDIO_LATENT_CHANNELS * AUDIO_MEL_BINS // 4,  # constraint of the class
        output_channels=AUDIO_OUTPUT_CHANNELS,
        ch_mult=(1, 2, 4),  # three levels: x4 time and x4 mel compression, like the real one
        num_res_blocks=1,
        attn_resolutions=None,
        in_channels=AUDIO_OUTPUT_CHANNELS,
        resolution=32,
        latent_channels=AUDIO_LATENT_CHANNELS,
        norm_type="pixel",
        causality_axis="height",
        dropout=0.0,
        mid_block_add_attention=False,
        sample_rate=16000,
        mel_hop_length=160,
        is_causal=True,
        mel_bins=AUDIO_MEL_BINS,
    ).eval()


def _build_vocoder():
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder

    torch.manual_seed(_SEED_VOCODER)
    # 16 kHz mel at hop 160 is 100 frames/s; 6*5*2*2*2 = 240 samples per frame gives 24 kHz, as in 2.0.
    return LTX2Vocoder(
        in_channels=AUDIO_OUTPUT_CHANNELS * AUDIO_MEL_BINS,
        hidden_channels=64,  # halves at each of the 5 upsamplers
        out_channels=2,
        upsample_kernel_sizes=[12, 10, 4, 4, 4],
        upsample_factors=[6, 5, 2, 2, 2],
        resnet_kernel_sizes=[3],
        resnet_dilations=[[1]],
        leaky_relu_negative_slope=0.1,
        output_sampling_rate=24000,
    ).eval()


def _build_scheduler():
    from diffusers import FlowMatchEulerDiscreteScheduler

    # As scripts/convert_ltx2_to_diffusers.py configures it for the dev checkpoint.
    return FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=True,
        base_shift=0.95,
        max_shift=2.05,
        base_image_seq_len=1024,
        max_image_seq_len=4096,
        shift_terminal=0.1,
    )


def build_tiny_pipeline():
    """Return a deterministic tiny LTX2ImageToVideoPipeline on the CPU (float32)."""
    from diffusers import LTX2ImageToVideoPipeline

    tokenizer = _build_tokenizer()
    text_encoder = _build_text_encoder(len(tokenizer), tokenizer)
    pipe = LTX2ImageToVideoPipeline(
        scheduler=_build_scheduler(),
        vae=_build_video_vae(),
        audio_vae=_build_audio_vae(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        connectors=_build_connectors(),
        transformer=_build_transformer(),
        vocoder=_build_vocoder(),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


_SEED_LATENT_UPSAMPLER = 6
_SEED_DISTILLED_LORA = 7
TINY_LORA_RANK = 4
# Linear layers the tiny stage-2 LoRA adapts: the real distilled LoRA touches every attention and
# feed-forward projection; a handful is enough to run the same load/convert/enable/disable path.
_TINY_LORA_TARGETS = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "ff.net.0.proj", "ff.net.2")


def build_tiny_latent_upsampler():
    """A tiny 2x spatial latent upsampler (same class and layout as the real one, narrow widths)."""
    from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel

    torch.manual_seed(_SEED_LATENT_UPSAMPLER)
    # GroupNorm(32, mid_channels) inside the class needs a multiple of 32.
    return LTX2LatentUpsamplerModel(
        in_channels=VIDEO_LATENT_CHANNELS,
        mid_channels=32,
        num_blocks_per_stage=1,
        dims=3,
        spatial_upsample=True,
        temporal_upsample=False,
        rational_spatial_scale=2.0,
        use_rational_resampler=False,
    ).eval()


def build_tiny_distilled_lora(transformer) -> dict[str, torch.Tensor]:
    """A tiny stage-2 LoRA in Lightricks' original key format (``diffusion_model.<module>.lora_A.weight``),
    so loading it runs the same conversion that the real ltx-2-19b-distilled-lora-384 file goes through.
    """
    return random_lightricks_lora(
        transformer, targets=_TINY_LORA_TARGETS, rank=TINY_LORA_RANK, seed=_SEED_DISTILLED_LORA, std_a=0.1, std_b=0.1
    )


def random_lightricks_lora(
    transformer,
    *,
    targets: tuple[str, ...],
    rank: int,
    seed: int,
    within: str = "",
    std_a: float | None = None,
    std_b: float | None = None,
    device="cpu",
    dtype: torch.dtype = torch.float32,
) -> dict[str, torch.Tensor]:
    """Random LoRA factors, in Lightricks' key format, for every nn.Linear whose name contains ``within``
    and ends with one of ``targets``. Default scales (A ~ 1/sqrt(in), B ~ 0.1/sqrt(rank)) make the update
    about a tenth of the layer's input, whatever the widths: finite in bf16 at full size."""
    generator = torch.Generator(device).manual_seed(seed)
    state_dict: dict[str, torch.Tensor] = {}
    for name, module in transformer.named_modules():
        if not isinstance(module, torch.nn.Linear) or within not in name or not name.endswith(targets):
            continue
        key = f"diffusion_model.{name}"
        scale_a = std_a if std_a is not None else module.in_features**-0.5
        scale_b = std_b if std_b is not None else 0.1 * rank**-0.5
        shapes = {"lora_A": (rank, module.in_features), "lora_B": (module.out_features, rank)}
        for factor, scale in (("lora_A", scale_a), ("lora_B", scale_b)):
            weight = torch.randn(shapes[factor], generator=generator, device=device, dtype=dtype).mul_(scale)
            state_dict[f"{key}.{factor}.weight"] = weight
    return state_dict


def save_tiny_weights(directory) -> None:
    """Write the tiny model to disk in the real weights layout (diffusers folder + latent upsampler + LoRA),
    so tests load it through the same loader as LTX-2 19B."""
    from pathlib import Path

    from safetensors.torch import save_file

    from .weights import DISTILLED_LORA_FILE, LATENT_UPSAMPLER_DIR

    directory = Path(directory)
    pipe = build_tiny_pipeline()
    pipe.save_pretrained(directory)
    build_tiny_latent_upsampler().save_pretrained(directory / LATENT_UPSAMPLER_DIR)
    lora = {key: value.contiguous() for key, value in build_tiny_distilled_lora(pipe.transformer).items()}
    save_file(lora, directory / DISTILLED_LORA_FILE)
