"""LTX-2.3 against Lightricks' reference: the twins of tests/parity/twins23.py (ltx-core models from an
LTX-2.3-style config; diffusers models through the server's single-file loading code), component by component
and recipe by recipe, with LTX_2_3_PARAMS' guidance.

Everything the image-to-video recipes run is compared, the vocoder's bandwidth extension included (ltx-core's
VocoderWithBWE computes its mel with convolutions from buffers in the checkpoint, not with torchaudio). Not
compared: the audio VAE's encoder, whose mel front end is the one ltx-core module needing torchaudio; the
recipes never encode audio (tests/parity/reference.py).
"""

from __future__ import annotations

import dataclasses
import types

import pytest
import torch

from pipelines.generations import LTX_2_3_POLICY

from . import reference  # noqa: F401  (before any ltx_core import)
from .record import record
from .test_recipes import (
    NUM_FRAMES,
    STEPS,
    assert_same_latents,
    max_diff,
    reference_params,
    run_ours,
    run_theirs,
)
from .twins import run_diffusers_transformer, run_reference_transformer
from .twins23 import AUDIO_INNER, VIDEO_INNER, build_twins_2_3, make_step_2_3

FORWARD_TOLERANCE = 1e-5
LOOP_TOLERANCE = 1e-4

# LTX_2_3_PARAMS with STG on block 1: the twins have 2 blocks, and block 28 would perturb nothing.
GUIDANCE_2_3 = dataclasses.replace(
    LTX_2_3_POLICY,
    video=dataclasses.replace(LTX_2_3_POLICY.video, stg_blocks=(1,)),
    audio=dataclasses.replace(LTX_2_3_POLICY.audio, stg_blocks=(1,)),
)


@pytest.fixture(scope="module")
def twins23():
    return build_twins_2_3(0)


@pytest.fixture(scope="module")
def contexts23():
    """Prompt contexts as the 2.3 transformer takes them: each modality at its own width."""
    generator = torch.Generator().manual_seed(7)
    widths = (VIDEO_INNER, AUDIO_INNER, VIDEO_INNER, AUDIO_INNER)
    return [torch.randn(1, 12, width, generator=generator) for width in widths]


@pytest.fixture(scope="module")
def image_path(tmp_path_factory):
    import numpy as np
    from PIL import Image

    rows, cols = np.mgrid[0:90, 0:160]
    pixels = np.stack([rows * 2.5, cols * 1.5, (rows + cols) % 255], axis=-1).astype(np.uint8)
    path = tmp_path_factory.mktemp("parity23") / "image.png"
    Image.fromarray(pixels).save(path)
    return str(path)


def _close(what: str, ours: torch.Tensor, theirs: torch.Tensor, tolerance: float = FORWARD_TOLERANCE) -> None:
    difference = max_diff(ours, theirs)
    record(f"LTX-2.3 {what}", difference, tolerance)
    assert difference < tolerance, f"{what}: {difference:.2e}"
    assert theirs.abs().max() > 1e-2, f"{what}: vacuous (all near zero)"


def test_the_twins_are_ltx_2_3_models(twins23):
    """The switches that make them 2.3, on both sides, so no comparison below is a 2.0 one in disguise."""
    transformer, connectors = twins23.pipe.transformer.config, twins23.pipe.connectors.config
    assert transformer.gated_attn and transformer.cross_attn_mod and not transformer.use_prompt_embeddings
    assert connectors.per_modality_projections and connectors.video_gated_attn
    assert connectors.video_connector_num_layers == 3
    assert type(twins23.pipe.vocoder).__name__ == "LTX2VocoderWithBWE"
    assert twins23.pipe.vocoder.config.output_sampling_rate == 48000
    assert twins23.pipe.vae.config.upsample_type == ("spatiotemporal", "spatiotemporal", "temporal", "spatial")
    velocity = twins23.reference.transformer.velocity_model
    assert velocity.cross_attention_adaln and velocity.transformer_blocks[0].attn1.to_gate_logits is not None
    assert type(twins23.reference.vocoder).__name__ == "VocoderWithBWE"


@pytest.mark.parametrize("variant", ["plain", "stg", "isolated"])
def test_one_transformer_step(twins23, variant):
    from ltx_core.guidance.perturbations import (
        BatchedPerturbationConfig,
        Perturbation,
        PerturbationConfig,
        PerturbationType,
    )

    step = make_step_2_3(3)
    kwargs: dict = {}
    perturbations = None
    if variant == "stg":
        kwargs["spatio_temporal_guidance_blocks"] = [1]
        types_ = (PerturbationType.SKIP_VIDEO_SELF_ATTN, PerturbationType.SKIP_AUDIO_SELF_ATTN)
        perturbations = BatchedPerturbationConfig(
            [PerturbationConfig([Perturbation(type=t, blocks=[1]) for t in types_])]
        )
    elif variant == "isolated":
        kwargs["isolate_modalities"] = True
        types_ = (PerturbationType.SKIP_A2V_CROSS_ATTN, PerturbationType.SKIP_V2A_CROSS_ATTN)
        perturbations = BatchedPerturbationConfig(
            [PerturbationConfig([Perturbation(type=t, blocks=None) for t in types_])]
        )
    theirs = run_reference_transformer(twins23.reference.transformer, step, perturbations)
    ours = run_diffusers_transformer(twins23.pipe.transformer, step, **kwargs)
    _close(f"transformer step ({variant}): video x0", ours[0], theirs[0])
    _close(f"transformer step ({variant}): audio x0", ours[1], theirs[1])


def test_text_connectors_with_per_modality_projections(twins23):
    from .twins import TEXT_HIDDEN, TEXT_LAYERS

    g = torch.Generator().manual_seed(15)
    hidden_states = tuple(3 * torch.randn(1, 128, TEXT_HIDDEN, generator=g) + i for i in range(TEXT_LAYERS + 1))
    mask = torch.zeros(1, 128, dtype=torch.int64)
    mask[:, 100:] = 1
    with torch.no_grad():
        ref = twins23.reference.embeddings_processor.process_hidden_states(hidden_states, mask, padding_side="left")
        video, audio, binary = twins23.pipe.connectors(torch.stack(hidden_states, -1).flatten(2, 3), mask)
    _close("text connectors: video context", video, ref.video_encoding)
    _close("text connectors: audio context", audio, ref.audio_encoding)
    assert torch.equal(binary, ref.attention_mask)
    assert video.shape[-1] == VIDEO_INNER and audio.shape[-1] == AUDIO_INNER


def test_rebuilt_video_vae_decodes_to_the_reference_frames(twins23):
    """The four-upsampler decoder, through the server's chunked decode, against ltx-core's decode_video."""
    from ltx_core.model.video_vae import decode_video

    from pipelines.decode import decode_video_chunks

    vae = twins23.pipe.vae
    latent = torch.randn(1, 8, 3, 2, 3, generator=torch.Generator().manual_seed(4))
    raw = latent * vae.latents_std.view(1, -1, 1, 1, 1) + vae.latents_mean.view(1, -1, 1, 1, 1)
    with torch.no_grad():
        ours = torch.cat(list(decode_video_chunks(vae, raw, num_frames=NUM_FRAMES, chunk_frames=8)))
        theirs = torch.cat(list(decode_video(latent, twins23.reference.video_decoder)))
    levels = (ours.int() - theirs.int()).abs().max().item()
    record("LTX-2.3 video VAE: decoded frames", levels, 1, unit="uint8 levels")
    assert ours.shape == theirs.shape and levels <= 1 and theirs.float().std() > 5


def test_vocoder_with_bandwidth_extension(twins23):
    """16 kHz mel -> 48 kHz stereo, through both stages, as ltx-core's VocoderWithBWE."""
    mel = 0.3 * torch.randn(1, 2, 24, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ours, theirs = twins23.pipe.vocoder(mel), twins23.reference.vocoder(mel)
    assert ours.shape == theirs.shape == (1, 2, 24 * 160 * 3)
    _close("vocoder with bandwidth extension: waveform", ours, theirs)
    assert (theirs.abs() < 0.999).float().mean() > 0.5  # mostly not clipped: the comparison sees real values


@pytest.mark.parametrize("recipe", ["two-stage", "one-stage"])
def test_guided_recipe_matches_the_reference(twins23, image_path, contexts23, monkeypatch, recipe):
    ours = run_ours(twins23.bundle, recipe, image_path, contexts23, GUIDANCE_2_3)
    theirs = run_theirs(twins23, recipe, image_path, contexts23, GUIDANCE_2_3, monkeypatch)
    assert_same_latents(twins23.bundle, ours, theirs, f"LTX-2.3 {recipe} recipe, LTX_2_3_PARAMS guidance (STG block 1)")
    assert (ours.passes[0].count, ours.passes[0].max_batch) == (4 * STEPS, 1)


def test_default_policy_is_ltx_2_3_params_and_matches_it(twins23, image_path, contexts23, monkeypatch):
    """The generation's default policy, with its real STG block 28 (which the 2-block twins lack), against
    ltx-pipelines' own LTX_2_3_PARAMS: no STG pass on either side."""
    from ltx_pipelines.utils.constants import LTX_2_3_PARAMS

    from pipelines.generations import generation

    policy = generation("tiny-2.3").guidance_policy("ltx-pipelines")
    assert reference_params(policy.video) == LTX_2_3_PARAMS.video_guider_params
    assert reference_params(policy.audio) == LTX_2_3_PARAMS.audio_guider_params
    ours = run_ours(twins23.bundle, "one-stage", image_path, contexts23, policy)
    theirs = run_theirs(twins23, "one-stage", image_path, contexts23, policy, monkeypatch)
    assert_same_latents(twins23.bundle, ours, theirs, "LTX-2.3 one-stage recipe, default policy (LTX_2_3_PARAMS)")
    assert ours.passes[0].count == 3 * STEPS


def test_distilled_recipe_with_the_lora_matches_the_reference(twins23, image_path, contexts23, monkeypatch):
    ours = run_ours(twins23.bundle, "distilled", image_path, contexts23, GUIDANCE_2_3)
    theirs = run_theirs(
        twins23, "distilled", image_path, contexts23, GUIDANCE_2_3, monkeypatch,
        distilled=twins23.reference.transformer_lora,
    )
    assert_same_latents(twins23.bundle, ours, theirs, "LTX-2.3 distilled recipe with the LoRA")


def test_distilled_recipe_with_the_checkpoint_matches_the_reference(twins23, image_path, contexts23, monkeypatch):
    """Lightricks' distilled checkpoint runs both stages (another twin's transformer here), no LoRA."""
    other = build_twins_2_3(1)
    bundle = types.SimpleNamespace(
        pipe=twins23.bundle.pipe,
        latent_upsampler=twins23.bundle.latent_upsampler,
        distilled_adapter=twins23.bundle.distilled_adapter,
        distilled_transformer=other.bundle.pipe.transformer,
    )
    ours = run_ours(bundle, "distilled", image_path, contexts23, GUIDANCE_2_3)
    theirs = run_theirs(
        twins23, "distilled", image_path, contexts23, GUIDANCE_2_3, monkeypatch, distilled=other.reference.transformer
    )
    assert_same_latents(twins23.bundle, ours, theirs, "LTX-2.3 distilled recipe with the checkpoint")


def test_two_stage_recipe_decodes_to_the_reference_frames_and_waveform(twins23, image_path, contexts23, monkeypatch):
    """To what is muxed: frames through the chunked decoder, the 48 kHz waveform through the audio VAE and the
    bandwidth-extending vocoder."""
    from ltx_core.model.audio_vae import decode_audio
    from ltx_core.model.video_vae import decode_video

    from pipelines.decode import decode_video_chunks
    from pipelines.generate import decode_waveform

    pipe = twins23.bundle.pipe
    ours = run_ours(twins23.bundle, "two-stage", image_path, contexts23, GUIDANCE_2_3)
    theirs = run_theirs(twins23, "two-stage", image_path, contexts23, GUIDANCE_2_3, monkeypatch)
    with torch.no_grad():
        our_frames = torch.cat(list(decode_video_chunks(pipe.vae, ours.video, num_frames=NUM_FRAMES, chunk_frames=8)))
        their_frames = torch.cat(list(decode_video(theirs.video, twins23.reference.video_decoder)))
        our_wave = decode_waveform(pipe, ours.audio)
        their_wave = decode_audio(theirs.audio, twins23.reference.audio_decoder, twins23.reference.vocoder)
    levels = (our_frames.int() - their_frames.int()).abs()
    record("LTX-2.3 two-stage recipe: decoded frames", levels.max().item(), 1, unit="uint8 levels")
    assert levels.max() <= 1 and levels.float().mean() < 1e-3
    assert their_wave.sampling_rate == 48000
    wave = max_diff(torch.from_numpy(our_wave), their_wave.waveform)
    record("LTX-2.3 two-stage recipe: 48 kHz waveform", wave, LOOP_TOLERANCE)
    assert wave < LOOP_TOLERANCE and their_wave.waveform.abs().max() > 1e-3
