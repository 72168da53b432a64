"""The full-size LTX-2.3 configs of pipelines/ltx23_22b.py (what scripts/bench_gpu.py --models ltx-2.3-22b
times on a GPU), built on the meta device (shapes only, no memory)."""

from __future__ import annotations

import pytest

from pipelines import ltx2_19b, ltx23_22b


@pytest.fixture(scope="module")
def meta_transformer():
    return ltx23_22b.build_component("transformer", device="meta")


def test_transformer_and_text_connectors_are_the_22b(meta_transformer):
    """Lightricks' "22B" is the transformer with the text connectors 2.3's checkpoint carries: 18.99B + 3.17B."""
    connectors = ltx23_22b.build_component("connectors", device="meta")
    total = ltx2_19b.count_params(meta_transformer) + ltx2_19b.count_params(connectors)
    assert total == pytest.approx(22e9, rel=0.01)
    text_encoder = ltx23_22b.build_component("text_encoder", device="meta")
    assert ltx2_19b.count_params(text_encoder) == pytest.approx(ltx2_19b.PUBLISHED_PARAMS["text_encoder"], rel=0.01)


def test_every_attention_is_gated_and_there_is_no_caption_projection(meta_transformer):
    attentions = [m for name, m in meta_transformer.named_modules() if name.endswith(("attn1", "attn2"))
                  or name.endswith(("audio_to_video_attn", "video_to_audio_attn"))]  # fmt: skip
    assert attentions and all(m.to_gate_logits is not None for m in attentions)
    assert not hasattr(meta_transformer, "caption_projection")
    assert hasattr(meta_transformer, "prompt_adaln") and meta_transformer.time_embed.linear.out_features == 9 * 4096


def test_the_vocoder_extends_to_48_khz_and_the_vae_compresses_as_2_0():
    vocoder = ltx23_22b.build_component("vocoder", device="meta")
    assert type(vocoder).__name__ == "LTX2VocoderWithBWE" and vocoder.config.output_sampling_rate == 48000
    vae = ltx23_22b.build_component("vae", device="meta")
    assert (vae.spatial_compression_ratio, vae.temporal_compression_ratio) == (32, 8)
    assert len(vae.decoder.up_blocks) == 4


def test_forward_flops_drop_only_the_caption_projection():
    video, audio = ltx2_19b.video_tokens(1280, 704, 181), ltx2_19b.audio_tokens(181, 24)
    old = ltx2_19b.transformer_forward_flops(ltx2_19b.TRANSFORMER_CONFIG, video, audio, 1024)
    new = ltx2_19b.transformer_forward_flops(ltx23_22b.TRANSFORMER_CONFIG, video, audio, 1024)
    d, a = 4096, 2048
    caption = 2 * 1024 * 3840 * (d + a) + 2 * 1024 * (d * d + a * a)
    assert old - new == caption and new / old > 0.99
