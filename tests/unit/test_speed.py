"""The speed options of pipelines/speed.py that need no whole request: validation, start-up refusals, the
attention kernel switch (and its undo), the negative prompt cache's bookkeeping and the one-pass video decode."""

from __future__ import annotations

import pytest
import torch

import pipelines
from pipelines.decode import decode_video_chunks, to_uint8_frames
from pipelines.denoise import make_stg_capable
from pipelines.speed import (
    NegativePromptCache,
    SpeedOptions,
    SpeedOptionUnavailable,
    apply_speed_options,
    attention_processors,
    bundle_transformers,
    check_speed_options,
    compile_repeated_blocks,
    set_attention,
)
from pipelines.tiny import _build_transformer, _build_video_vae

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    "options,message",
    [
        (dict(compile="full"), "compile: must be one of off, regional"),
        (dict(attention="xformers"), "attention: must be one of auto, sdpa, cudnn, flash4, sage"),
        (dict(decode_chunk_frames=-1), "decode_chunk_frames: must be >= 0"),
    ],
)
def test_speed_options_refuse_unknown_values(options, message):
    with pytest.raises(ValueError, match=message):
        SpeedOptions(**options)


@pytest.mark.parametrize(
    "attention,named", [("cudnn", "CUDA GPU"), ("flash4", "pip install flash-attn-4"), ("sage", "sageattention")]
)
def test_a_kernel_this_machine_cannot_run_is_refused_naming_what_it_needs(attention, named):
    with pytest.raises(SpeedOptionUnavailable, match=named):
        check_speed_options(SpeedOptions(attention=attention), CPU)


@pytest.mark.parametrize("attention", ["auto", "sdpa"])
def test_torch_s_own_attention_runs_everywhere(attention):
    check_speed_options(SpeedOptions(attention=attention, compile="regional"), CPU)


def test_load_generator_refuses_an_unavailable_kernel_before_loading_any_weights(tmp_path):
    # The weights folder is empty: had loading begun, the error would be about missing weights.
    with pytest.raises(SpeedOptionUnavailable, match="flash-attn-4"):
        pipelines.load_generator("ltx-2-19b", weights=str(tmp_path), device="cpu", attention="flash4")


def test_sdpa_points_every_transformer_attention_at_torch_sdpa_and_undo_restores_the_default():
    transformer = _build_transformer()
    processors = attention_processors(transformer)
    assert processors and all(p._attention_backend is None for p in processors)
    undo = set_attention(transformer, "sdpa", CPU)
    assert {str(p._attention_backend.value) for p in processors} == {"native"}
    undo()
    assert all(p._attention_backend is None for p in processors)
    assert set_attention(transformer, "auto", CPU) is not None
    assert all(p._attention_backend is None for p in processors)  # auto: diffusers' default, untouched


def test_stg_s_perturbing_processors_keep_the_chosen_kernel():
    transformer = _build_transformer()
    set_attention(transformer, "sdpa", CPU)
    make_stg_capable(transformer)
    processors = attention_processors(transformer)
    assert {type(p).__name__ for p in processors} == {"LTX2PerturbedAttnProcessor"}
    assert {str(p._attention_backend.value) for p in processors} == {"native"}


def test_sdpa_computes_what_the_default_computes():
    transformer = _build_transformer().eval()
    generator = torch.Generator().manual_seed(0)
    config = transformer.config
    inputs = dict(
        hidden_states=torch.randn(1, 2 * 2 * 2, config.in_channels, generator=generator),
        audio_hidden_states=torch.randn(1, 3, config.audio_in_channels, generator=generator),
        encoder_hidden_states=torch.randn(1, 5, config.caption_channels, generator=generator),
        audio_encoder_hidden_states=torch.randn(1, 5, config.caption_channels, generator=generator),
        timestep=torch.full((1, 8), 500.0),
        audio_timestep=torch.full((1, 3), 500.0),
        num_frames=2,
        height=2,
        width=2,
        fps=24.0,
        audio_num_frames=3,
        return_dict=False,
    )
    with torch.no_grad():
        default = transformer(**inputs)
        set_attention(transformer, "sdpa", CPU)
        named = transformer(**inputs)
    for a, b in zip(default, named, strict=True):
        assert torch.equal(a, b)


def test_every_transformer_of_a_bundle_is_found_once():
    class Pipe:
        transformer = _build_transformer()

    class Bundle:
        pipe = Pipe()

        def __init__(self) -> None:
            self.distilled_transformer = Pipe.transformer  # the distilled checkpoint's: the same object
            self.stage2_transformer = _build_transformer()  # e.g. one with the LoRA merged in
            self.latent_upsampler = torch.nn.Linear(2, 2)

    bundle = Bundle()
    found = bundle_transformers(bundle)
    assert [id(t) for t in found] == [id(Pipe.transformer), id(bundle.stage2_transformer)]
    undo = apply_speed_options(bundle, SpeedOptions(attention="sdpa"), CPU)
    assert all(str(p._attention_backend.value) == "native" for t in found for p in attention_processors(t))
    undo()
    assert all(p._attention_backend is None for t in found for p in attention_processors(t))


def test_regional_compile_marks_each_repeated_block_and_undo_unmarks_them():
    transformer = _build_transformer()
    blocks = list(transformer.transformer_blocks)
    undo = compile_repeated_blocks(transformer)
    assert all(block._compiled_call_impl is not None for block in blocks)
    undo()
    assert all(block._compiled_call_impl is None for block in blocks)


@pytest.mark.parametrize("offload", ["group", "sequential"])
def test_regional_compile_is_refused_with_block_offloading(offload):
    with pytest.raises(SpeedOptionUnavailable, match=f"not with offload {offload}"):
        compile_repeated_blocks(_build_transformer(), offload)


def test_negative_prompt_cache_encodes_once_per_key_and_drops_the_least_recently_used():
    cache = NegativePromptCache(max_entries=2)
    encoded: list[str] = []

    def encoder(name: str):
        def encode():
            encoded.append(name)
            return torch.zeros(1), torch.ones(1)

        return encode

    first = cache.get_or_encode(("a",), encoder("a"))
    assert cache.get_or_encode(("a",), encoder("a")) is first
    cache.get_or_encode(("b",), encoder("b"))
    cache.get_or_encode(("a",), encoder("a"))  # "a" is now the most recently used
    cache.get_or_encode(("c",), encoder("c"))  # drops "b"
    cache.get_or_encode(("a",), encoder("a"))
    cache.get_or_encode(("b",), encoder("b"))
    assert encoded == ["a", "b", "c", "b"] and len(cache) == 2


@pytest.mark.parametrize("num_frames", [20, 17, 9, 1])
def test_one_pass_decode_gives_the_whole_decode_s_frames_exactly(num_frames):
    vae = _build_video_vae()
    latents = torch.randn(1, vae.config.latent_channels, 4, 3, 2, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = to_uint8_frames(vae.decode(latents, None, return_dict=False)[0])[:num_frames]
    one_pass = list(decode_video_chunks(vae, latents, num_frames=num_frames, chunk_frames=0))
    chunked = torch.cat(list(decode_video_chunks(vae, latents, num_frames=num_frames, chunk_frames=8)))
    assert len(one_pass) == 1 and one_pass[0].shape == (num_frames, 96, 64, 3)
    assert torch.equal(one_pass[0], expected) and torch.equal(chunked, expected)
