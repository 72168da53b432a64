"""The full-size LTX-2.5 configs of pipelines/ltx25_full.py (what scripts/bench_gpu.py --models ltx-2.5 times on a
GPU), built on the meta device (shapes only, no memory)."""

from __future__ import annotations

import pytest

from pipelines import ltx2_19b, ltx23_22b, ltx25_full
from pipelines.ltx25 import decoder_minimum


@pytest.fixture(scope="module")
def meta_transformer():
    return ltx25_full.build_component("transformer", device="meta")


def test_the_transformer_is_18_9b_and_with_the_text_connectors_the_22b(meta_transformer):
    transformer = ltx2_19b.count_params(meta_transformer)
    assert transformer == pytest.approx(ltx25_full.PUBLISHED_PARAMS["transformer"], rel=0.01)
    connectors = ltx2_19b.count_params(ltx25_full.build_component("connectors", device="meta"))
    assert transformer + connectors == pytest.approx(22e9, rel=0.01)


def test_the_switches_that_make_the_transformer_2_5(meta_transformer):
    """No video feed-forward bias, no timestep MLP for the prompt modulation (the per-layer table stays), the
    keyframe embedding; 2.3's gated attention and no caption projection kept."""
    block = meta_transformer.transformer_blocks[0]
    assert block.ff.net[0].proj.bias is None and block.audio_ff.net[0].proj.bias is not None
    assert not hasattr(meta_transformer, "prompt_adaln") and hasattr(block, "prompt_scale_shift_table")
    assert tuple(meta_transformer.keyframes_abs_pos_embedding.shape) == (1, 4096)
    assert block.attn1.to_gate_logits is not None and not hasattr(meta_transformer, "caption_projection")


def test_the_text_encoder_is_gemma_4_12b():
    encoder = ltx25_full.build_component("text_encoder", device="meta")
    assert type(encoder).__name__ == "Gemma4UnifiedForConditionalGeneration"
    assert ltx2_19b.count_params(encoder) == pytest.approx(ltx25_full.PUBLISHED_PARAMS["text_encoder"], rel=0.01)
    text = encoder.config.text_config
    # The connectors stack every hidden state (48 layers + the embeddings) of Gemma's width.
    assert text.num_hidden_layers + 1 == ltx25_full.CONNECTORS_CONFIG["text_proj_in_factor"]
    assert text.hidden_size == ltx25_full.CONNECTORS_CONFIG["caption_channels"]


def test_the_diffusion_decoder_is_0_42b_with_the_size_floor_the_server_documents():
    decoder = ltx25_full.build_component("diffusion_decoder", device="meta")
    count = ltx2_19b.count_params(decoder)
    assert count == pytest.approx(ltx25_full.PUBLISHED_PARAMS["diffusion_decoder"], rel=0.01)
    # 3 latent frames (17 video frames) and 7 latent rows and columns (224 px): docs/generations.md.
    assert decoder_minimum(decoder.config) == (3, 7, 7)


def test_forward_flops_are_2_3_s_the_switches_change_no_matmul():
    video, audio = ltx2_19b.video_tokens(1280, 736, 185), ltx2_19b.audio_tokens(185, 24)
    flops = ltx2_19b.transformer_forward_flops(ltx25_full.TRANSFORMER_CONFIG, video, audio, 1024)
    assert flops == ltx2_19b.transformer_forward_flops(ltx23_22b.TRANSFORMER_CONFIG, video, audio, 1024) > 0
