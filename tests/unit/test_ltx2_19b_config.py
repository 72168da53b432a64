"""The full-size LTX-2 19B configs of pipelines/ltx2_19b.py (what scripts/bench_gpu.py times on a GPU) are
the real architecture: every component, built on the meta device (shapes only, no memory), has the
published parameter count; the analytic FLOP count reproduces the notes' per-forward figures."""

from __future__ import annotations

import pytest

from pipelines import ltx2_19b


@pytest.fixture(scope="module")
def meta_transformer():
    return ltx2_19b.build_component("transformer", device="meta")


@pytest.mark.parametrize("name", list(ltx2_19b.COMPONENTS))
def test_full_size_component_has_the_published_parameter_count(name, meta_transformer):
    published = ltx2_19b.PUBLISHED_PARAMS[name]
    module = meta_transformer if name == "transformer" else ltx2_19b.build_component(name, device="meta")
    count = ltx2_19b.count_params(module)
    # Published sizes are rounded to 0.01B: allow that rounding, and 1 % on the large components.
    assert abs(count - published) <= max(0.01 * published, 0.005e9), f"{name}: {count / 1e9:.4f}B"


def test_distilled_lora_targets_every_attention_and_feed_forward_projection(meta_transformer):
    import torch

    targets = [
        name
        for name, module in meta_transformer.named_modules()
        if isinstance(module, torch.nn.Linear)
        and "transformer_blocks." in name
        and name.endswith(ltx2_19b.DISTILLED_LORA_TARGETS)
    ]
    # Per block: 6 attentions (video/audio self, video/audio text, a2v, v2a) x q/k/v/out + 2 feed-forwards x 2.
    assert len(targets) == 48 * (6 * 4 + 2 * 2)


def test_forward_flops_match_the_notes():
    config = ltx2_19b.TRANSFORMER_CONFIG
    audio = ltx2_19b.audio_tokens(181, 24)
    full_video = ltx2_19b.video_tokens(width=1280, height=704, num_frames=181)
    half_video = ltx2_19b.video_tokens(width=640, height=352, num_frames=181)
    assert (full_video, audio) == (20240, 189)  # the notes' token counts at 704x1280x181
    full = ltx2_19b.transformer_forward_flops(config, full_video, audio, text=1024)
    half = ltx2_19b.transformer_forward_flops(config, half_video, audio, text=1024)
    assert full == pytest.approx(0.87e15, rel=0.03)
    assert half == pytest.approx(0.16e15, rel=0.05)
    assert ltx2_19b.transformer_forward_flops(config, full_video, audio, 1024, batch=2) == 2 * full
    # The notes: 39 % of a full-size forward is attention.
    attention = ltx2_19b.transformer_attention_flops(config, full_video, audio, text=1024)
    assert attention / full == pytest.approx(0.39, abs=0.02)
