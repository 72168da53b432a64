"""The speed options on the tiny model, for real: the negative prompt cache and the one-pass video decode give
the same mp4 bytes as without them, a compiled transformer pass matches the eager one, and the text
cross-attention's mask that the transformer is no longer given was provably a no-op."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pipelines
from pipelines.interface import JobSpec
from pipelines.speed import compile_repeated_blocks
from tests.support.media_probe import probe_mp4
from tests.support.transformer_pass import one_stage_inputs, prompt_pass


@pytest.fixture(scope="module")
def image_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("input") / "input.png"
    Image.fromarray(np.random.RandomState(3).randint(0, 255, (64, 96, 3), dtype=np.uint8)).save(path)
    return path


def params(prompt: str = "a cat on a sofa", negative_prompt: str = "blurry", **overrides) -> JobSpec:
    values = dict(width=64, height=64, num_frames=10, fps=24, seed=5, guidance_scale=4.0)
    values.update(overrides)
    return JobSpec(prompt=prompt, negative_prompt=negative_prompt, **values)  # type: ignore[arg-type]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def count_calls(module: torch.nn.Module) -> list[int]:
    """Wraps ``module.forward`` with a counter (the module still runs); returns the one-element count."""
    calls = [0]
    forward = module.forward

    def counted(*args, **kwargs):
        calls[0] += 1
        return forward(*args, **kwargs)

    module.forward = counted  # type: ignore[method-assign]
    return calls


def test_negative_prompt_cache_encodes_it_once_and_changes_no_byte(image_path, tmp_path):
    requests = [params("a cat on a sofa"), params("a dog in the snow"), params("a dog", negative_prompt="dark")]
    outputs: dict[bool, list[str]] = {}
    encoder_calls: dict[bool, int] = {}
    for cache in (False, True):
        generator = pipelines.load_generator("tiny", num_inference_steps=2, cache_negative_prompt=cache)
        calls = count_calls(generator.pipe.text_encoder)
        outputs[cache] = []
        for index, request in enumerate(requests):
            output = tmp_path / f"{cache}-{index}.mp4"
            generator.generate(request, image_path, output, lambda *report: None)
            outputs[cache].append(sha256(output))
        encoder_calls[cache] = calls[0]
    assert outputs[True] == outputs[False]
    assert len(set(outputs[True])) == 3
    # Without the cache: a prompt and a negative prompt per request. With it: "blurry" once, "dark" once.
    assert encoder_calls == {False: 6, True: 5}


def test_one_pass_video_decode_gives_the_chunked_decode_s_bytes_and_frame_count(image_path, tmp_path):
    hashes = []
    for chunk in (2, 0):
        generator = pipelines.load_generator(
            "tiny", recipe="one-stage", num_inference_steps=2, decode_chunk_frames=chunk
        )
        output = tmp_path / f"chunk-{chunk}.mp4"
        progress: list[tuple] = []
        generator.generate(
            params(num_frames=11), image_path, output, lambda *report, seen=progress: seen.append(report)
        )
        assert probe_mp4(output)["frame_count"] == 11
        decoded = [report for report in progress if report[0] == "decoding_video"]
        assert decoded[-1] == ("decoding_video", 11, 11)
        hashes.append(sha256(output))
        if chunk == 0:
            assert len(decoded) == 2  # 0 of 11, then all 11 at once
    assert hashes[0] == hashes[1]


def test_compile_regional_transformer_pass_matches_eager_within_float_rounding():
    """One prompt pass (compiling a whole request takes minutes on a small CPU; bench_gpu.py --tiny runs one)."""
    from torch._dynamo.utils import counters

    generator = pipelines.load_generator("tiny", recipe="one-stage", num_inference_steps=2)
    graphs_before = counters["stats"]["unique_graphs"]
    with torch.inference_mode():
        denoiser, video, audio, contexts = one_stage_inputs(generator, params())
        eager = prompt_pass(denoiser, video, audio, contexts)
        undo = compile_repeated_blocks(generator.pipe.transformer)
        try:
            compiled = prompt_pass(denoiser, video, audio, contexts)
        finally:
            undo()
    for eager_x0, compiled_x0 in zip(eager, compiled, strict=True):
        assert not torch.equal(eager_x0, torch.zeros_like(eager_x0))
        torch.testing.assert_close(compiled_x0, eager_x0, rtol=1e-4, atol=1e-4)
    assert counters["stats"]["unique_graphs"] > graphs_before  # dynamo really captured the block


def _connectors_with_registers():
    """The tiny text connectors as LTX-2 19B builds them: padding replaced by learned registers."""
    from diffusers.pipelines.ltx2 import LTX2TextConnectors

    from pipelines.tiny import TEXT_HIDDEN, TEXT_LAYERS

    torch.manual_seed(0)
    return LTX2TextConnectors(
        caption_channels=TEXT_HIDDEN,
        text_proj_in_factor=TEXT_LAYERS + 1,
        video_connector_num_attention_heads=2,
        video_connector_attention_head_dim=8,
        video_connector_num_layers=1,
        video_connector_num_learnable_registers=8,
        audio_connector_num_attention_heads=2,
        audio_connector_attention_head_dim=8,
        audio_connector_num_layers=1,
        audio_connector_num_learnable_registers=8,
        connector_rope_base_seq_len=32,
        rope_double_precision=False,
        rope_type="split",
    ).eval()


def test_the_connectors_all_ones_text_mask_is_a_no_op_so_the_transformer_is_not_given_it():
    """LTX-2's connectors put learned registers where the prompt's padding was and return an all-ones mask;
    diffusers' transformer turns it into an all-zero additive bias, which changes no attention weight but
    keeps torch's SDPA off its fastest kernels. The denoiser passes no mask: this proves nothing is lost."""
    generator = pipelines.load_generator("tiny", recipe="one-stage", num_inference_steps=2)
    pipe = generator.pipe
    with torch.inference_mode():
        hidden, mask, _, _ = pipe.encode_prompt(
            prompt="a cat", do_classifier_free_guidance=False, max_sequence_length=64
        )
        assert 0 < int(mask.sum()) < mask.numel()  # the prompt is padded
        video_context, audio_context, connector_mask = _connectors_with_registers()(hidden, mask, padding_side="left")
        assert torch.equal(connector_mask, torch.ones_like(connector_mask))
        denoiser, video, audio, _ = one_stage_inputs(generator, params())
        transformer = pipe.transformer
        geometry = denoiser.geometry
        sigmas = video.mask.squeeze(-1) * 700.0
        common = dict(
            hidden_states=video.latent,
            audio_hidden_states=audio.latent,
            encoder_hidden_states=video_context,
            audio_encoder_hidden_states=audio_context,
            timestep=sigmas,
            audio_timestep=audio.mask.squeeze(-1) * 700.0,
            num_frames=geometry.frames,
            height=geometry.height,
            width=geometry.width,
            fps=geometry.fps,
            audio_num_frames=geometry.audio_frames,
            video_coords=geometry.video_coords,
            audio_coords=geometry.audio_coords,
            return_dict=False,
        )
        masked = transformer(
            **common, encoder_attention_mask=connector_mask, audio_encoder_attention_mask=connector_mask
        )
        unmasked = transformer(**common, encoder_attention_mask=None, audio_encoder_attention_mask=None)
    for with_mask, without in zip(masked, unmasked, strict=True):
        torch.testing.assert_close(without, with_mask, rtol=0, atol=1e-6)


def test_no_transformer_attention_gets_a_mask_during_a_request(image_path, tmp_path):
    from diffusers.models.transformers.transformer_ltx2 import LTX2Attention

    generator = pipelines.load_generator("tiny", num_inference_steps=2)
    masks: list[object] = []

    def record(module, args, kwargs):
        masks.append(kwargs.get("attention_mask", args[2] if len(args) > 2 else None))

    handles = [
        module.register_forward_pre_hook(record, with_kwargs=True)
        for module in generator.pipe.transformer.modules()
        if isinstance(module, LTX2Attention)
    ]
    try:
        generator.generate(params(), image_path, tmp_path / "out.mp4", lambda *report: None)
    finally:
        for handle in handles:
            handle.remove()
    assert masks and all(mask is None for mask in masks)
