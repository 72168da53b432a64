"""Component parity: Lightricks' reference (ltx-core 1.0.0) vs diffusers, same tiny random weights, fp32 on CPU.

Every comparison is one forward on each side with identical inputs; TOLERANCE bounds the max-abs difference.
(With the twins as built, every comparison here measures 0.0 exactly: the two code paths run the same float32
operations in the same order. The tolerance leaves room for other BLAS/attention kernels, not for bugs.)
"""

from __future__ import annotations

import pytest
import torch

from . import reference  # noqa: F401  (before any ltx_core import)
from .record import record
from .twins import (
    AUDIO_LATENT_CHANNELS,
    AUDIO_LATENT_MEL_BINS,
    TEXT_HIDDEN,
    TEXT_LAYERS,
    VIDEO_LATENT_CHANNELS,
    diffusers_transformer_config,
    make_step,
    run_diffusers_transformer,
    run_reference_transformer,
)

TOLERANCE = 1e-5  # max-abs difference allowed for one forward of any component, fp32 CPU


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    assert torch.isfinite(a).all() and torch.isfinite(b).all()
    return (a.float() - b.float()).abs().max().item()


def assert_close(reference_out: torch.Tensor, diffusers_out: torch.Tensor, what: str) -> None:
    diff = max_abs(reference_out, diffusers_out)
    record(what, diff, TOLERANCE)
    # Guard against vacuous passes: the output must carry signal.
    assert reference_out.abs().max() > 1e-2, f"{what}: reference output is ~0"
    assert diff <= TOLERANCE, f"{what}: max-abs difference {diff:.3g} > {TOLERANCE}"


def _pipe_class(twins):
    return type(twins.pipe)


# ------------------------------------------------------------------------------------------------ transformer
def test_transformer_image_conditioned_step(twins):
    step = make_step(0)  # latent frame 0 clean (timestep 0), the other two at sigma 0.6
    ref_video, ref_audio = run_reference_transformer(twins.reference.transformer, step)
    dif_video, dif_audio = run_diffusers_transformer(twins.pipe.transformer, step)
    assert_close(ref_video, dif_video, "transformer forward, image-conditioned: video x0")
    assert_close(ref_audio, dif_audio, "transformer forward, image-conditioned: audio x0")
    # The conditioned tokens have timestep 0, so x0 there is the latent itself on both sides.
    first = step.latent_height * step.latent_width
    assert torch.equal(ref_video[:, :first], step.video_latent[:, :first])
    assert max_abs(ref_video[:, first:], step.video_latent[:, first:]) > 0.1


def test_transformer_batch_with_per_sample_sigma(twins):
    step = make_step(1, batch=2, sigma=(0.9, 0.25), latent_frames=2)
    ref_video, ref_audio = run_reference_transformer(twins.reference.transformer, step)
    dif_video, dif_audio = run_diffusers_transformer(twins.pipe.transformer, step)
    assert_close(ref_video, dif_video, "transformer forward, batch 2 with per-sample sigmas: video x0")
    assert_close(ref_audio, dif_audio, "transformer forward, batch 2 with per-sample sigmas: audio x0")


def test_transformer_stg_perturbation(twins):
    from ltx_core.guidance.perturbations import (
        BatchedPerturbationConfig,
        Perturbation,
        PerturbationConfig,
        PerturbationType,
    )

    block = 1
    step = make_step(2)
    perturbed = BatchedPerturbationConfig(
        [
            PerturbationConfig(
                [
                    Perturbation(PerturbationType.SKIP_VIDEO_SELF_ATTN, [block]),
                    Perturbation(PerturbationType.SKIP_AUDIO_SELF_ATTN, [block]),
                ]
            )
        ]
    )
    ref = run_reference_transformer(twins.reference.transformer, step, perturbed)
    dif = run_diffusers_transformer(twins.pipe.transformer, step, spatio_temporal_guidance_blocks=[block])
    assert_close(ref[0], dif[0], "transformer forward with STG: video x0")
    assert_close(ref[1], dif[1], "transformer forward with STG: audio x0")
    plain = run_reference_transformer(twins.reference.transformer, step)
    assert max_abs(plain[0], ref[0]) > 1e-3, "STG changed nothing: the comparison would be vacuous"


def test_transformer_stg_needs_perturbed_attn_in_diffusers(twins):
    """diffusers' 2.0 converter builds the transformer with perturbed_attn=False, and then
    spatio_temporal_guidance_blocks is silently ignored (the plain attention processor has no perturbation path),
    whereas ltx-core always honours SKIP_*_SELF_ATTN. pipelines.denoise.make_stg_capable (run by every stage that
    uses STG) switches the perturbing processor in; the result then equals the reference."""
    from diffusers import LTX2VideoTransformer3DModel
    from ltx_core.guidance.perturbations import (
        BatchedPerturbationConfig,
        Perturbation,
        PerturbationConfig,
        PerturbationType,
    )

    from pipelines.denoise import make_stg_capable

    config = {**diffusers_transformer_config(), "perturbed_attn": False}
    as_converted = LTX2VideoTransformer3DModel(**config).eval()
    base = {k: v for k, v in twins.pipe.transformer.state_dict().items() if "lora" not in k}
    base = {k.replace(".base_layer", ""): v for k, v in base.items()}
    as_converted.load_state_dict(base, strict=True)
    step = make_step(3)
    stg = run_diffusers_transformer(as_converted, step, spatio_temporal_guidance_blocks=[1])
    plain = run_diffusers_transformer(twins.pipe.transformer, step)
    assert max_abs(stg[0], plain[0]) == 0.0 and max_abs(stg[1], plain[1]) == 0.0  # as converted: STG ignored

    make_stg_capable(as_converted)
    unperturbed = run_diffusers_transformer(as_converted, step)
    assert max_abs(unperturbed[0], plain[0]) == 0.0 and max_abs(unperturbed[1], plain[1]) == 0.0
    skip = [
        Perturbation(PerturbationType.SKIP_VIDEO_SELF_ATTN, [1]),
        Perturbation(PerturbationType.SKIP_AUDIO_SELF_ATTN, [1]),
    ]
    perturbed = BatchedPerturbationConfig([PerturbationConfig(skip)])
    ref = run_reference_transformer(twins.reference.transformer, step, perturbed)
    stg = run_diffusers_transformer(as_converted, step, spatio_temporal_guidance_blocks=[1])
    assert_close(ref[0], stg[0], "transformer as converted + make_stg_capable, STG: video x0")
    assert_close(ref[1], stg[1], "transformer as converted + make_stg_capable, STG: audio x0")


def test_transformer_modality_isolation(twins):
    from ltx_core.guidance.perturbations import (
        BatchedPerturbationConfig,
        Perturbation,
        PerturbationConfig,
        PerturbationType,
    )

    step = make_step(4)
    isolated = BatchedPerturbationConfig(
        [
            PerturbationConfig(
                [
                    Perturbation(PerturbationType.SKIP_A2V_CROSS_ATTN, None),
                    Perturbation(PerturbationType.SKIP_V2A_CROSS_ATTN, None),
                ]
            )
        ]
    )
    ref = run_reference_transformer(twins.reference.transformer, step, isolated)
    dif = run_diffusers_transformer(twins.pipe.transformer, step, isolate_modalities=True)
    assert_close(ref[0], dif[0], "transformer forward, modalities isolated: video x0")
    assert_close(ref[1], dif[1], "transformer forward, modalities isolated: audio x0")
    plain = run_reference_transformer(twins.reference.transformer, step)
    assert max_abs(plain[1], ref[1]) > 1e-3, "isolation changed nothing: the comparison would be vacuous"


def test_transformer_with_distilled_lora(twins):
    """Stage 2: the reference runs base + fused LoRA; diffusers runs the peft adapter, enabled for the call."""
    step = make_step(5)
    ref = run_reference_transformer(twins.reference.transformer_lora, step)
    pipe = twins.pipe
    pipe.enable_lora()
    try:
        dif = run_diffusers_transformer(pipe.transformer, step)
    finally:
        pipe.disable_lora()
    assert_close(ref[0], dif[0], "transformer forward with the distilled LoRA: video x0")
    assert_close(ref[1], dif[1], "transformer forward with the distilled LoRA: audio x0")
    base = run_reference_transformer(twins.reference.transformer, step)
    assert max_abs(base[0], ref[0]) > 1e-3, "the LoRA changed nothing: the comparison would be vacuous"
    # and the adapter is off again for everyone else
    after = run_diffusers_transformer(pipe.transformer, step)
    assert_close(base[0], after[0], "transformer forward after disable_lora: video x0")


# ------------------------------------------------------------------------------------------------ video VAE
def test_video_vae_encode(twins):
    pipe = twins.pipe
    video = torch.rand(1, 3, 9, 64, 96, generator=torch.Generator().manual_seed(10)) * 2 - 1
    with torch.no_grad():
        ref = twins.reference.video_encoder(video)  # normalized latent means
        dif = pipe.vae.encode(video).latent_dist.mode()
        dif = _pipe_class(twins)._normalize_latents(dif, pipe.vae.latents_mean, pipe.vae.latents_std)
    assert ref.shape == (1, VIDEO_LATENT_CHANNELS, 2, 2, 3)  # x8 temporal (causal first frame), x32 spatial
    assert_close(ref, dif, "video VAE encode")


def test_video_vae_decode(twins):
    """Both decoders take the same latent: the reference de-normalizes inside the decoder, diffusers' pipeline does
    it before vae.decode. LTX-2.0's VAE has no timestep conditioning, so neither side adds decode noise (the
    reference only adds its 0.025 decode noise when timestep_conditioning is on; diffusers' pipeline likewise) and
    vae.decode gets temb=None."""
    pipe = twins.pipe
    assert not twins.reference.video_decoder.timestep_conditioning and not pipe.vae.config.timestep_conditioning
    latent = torch.randn(1, VIDEO_LATENT_CHANNELS, 2, 2, 3, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        ref = twins.reference.video_decoder(latent)
        denormalized = _pipe_class(twins)._denormalize_latents(latent, pipe.vae.latents_mean, pipe.vae.latents_std)
        dif = pipe.vae.decode(denormalized, None, return_dict=False)[0]
    assert ref.shape == (1, 3, 9, 64, 96)
    assert_close(ref, dif, "video VAE decode")


# ------------------------------------------------------------------------------------------------ audio
def test_audio_decode_and_vocoder(twins):
    from ltx_core.model.audio_vae.audio_vae import decode_audio

    pipe, cls = twins.pipe, _pipe_class(twins)
    frames = 8  # latent frames (x4 in time, minus 3 for causality: 29 mel frames -> 6960 samples at 24 kHz)
    shape = (1, AUDIO_LATENT_CHANNELS, frames, AUDIO_LATENT_MEL_BINS)
    latent = torch.randn(shape, generator=torch.Generator().manual_seed(12))
    with torch.no_grad():
        ref_mel = twins.reference.audio_decoder(latent)
        ref_audio = decode_audio(latent, twins.reference.audio_decoder, twins.reference.vocoder)
        # diffusers' pipeline: de-normalize the packed [B, L, C*M] latents, unpack, decode, vocoder
        packed = cls._pack_audio_latents(latent)
        packed = cls._denormalize_audio_latents(packed, pipe.audio_vae.latents_mean, pipe.audio_vae.latents_std)
        unpacked = cls._unpack_audio_latents(packed, frames, num_mel_bins=AUDIO_LATENT_MEL_BINS)
        dif_mel = pipe.audio_vae.decode(unpacked, return_dict=False)[0]
        dif_wave = pipe.vocoder(dif_mel)
    assert ref_mel.shape == (1, 2, frames * 4 - 3, 64)
    assert_close(ref_mel, dif_mel, "audio VAE decode: mel spectrogram")
    assert ref_audio.sampling_rate == pipe.vocoder.config.output_sampling_rate == 24000
    assert ref_audio.waveform.shape == (2, (frames * 4 - 3) * 240)
    assert_close(ref_audio.waveform, dif_wave[0], "vocoder: waveform")


# ------------------------------------------------------------------------------------------------ upsampler
def test_latent_upsampler(twins):
    from ltx_core.model.upsampler.model import upsample_video

    pipe, cls = twins.pipe, _pipe_class(twins)
    latent = torch.randn(1, VIDEO_LATENT_CHANNELS, 2, 2, 3, generator=torch.Generator().manual_seed(13))
    with torch.no_grad():
        ref = upsample_video(latent, twins.reference.video_encoder, twins.reference.upsampler)
        mean, std = pipe.vae.latents_mean, pipe.vae.latents_std
        upsampled = twins.bundle.latent_upsampler(cls._denormalize_latents(latent, mean, std))
        dif = cls._normalize_latents(upsampled, mean, std)
    assert ref.shape == (1, VIDEO_LATENT_CHANNELS, 2, 4, 6)
    assert_close(ref, dif, "latent upsampler")


# ------------------------------------------------------------------------------------------------ text path
@pytest.mark.parametrize("valid_tokens", [20, 128])
def test_text_connectors(twins, valid_tokens):
    """Gemma hidden states (embeddings + every layer) -> video/audio contexts. The reference's FeatureExtractorV1
    (masked mean/range norm x 8, then aggregate_embed) equals LTX2TextConnectors' per_layer_masked_mean_norm with
    the default scale_factor=8 followed by text_proj_in, given the stacked-and-flattened prompt_embeds that
    LTX2ImageToVideoPipeline._get_gemma_prompt_embeds builds and padding_side="left" (the pipeline's default)."""
    seq = 128  # a multiple of the 128 learnable registers, as the pipeline's 1024-token padding is
    g = torch.Generator().manual_seed(14)
    hidden_states = tuple(3 * torch.randn(1, seq, TEXT_HIDDEN, generator=g) + i for i in range(TEXT_LAYERS + 1))
    mask = torch.zeros(1, seq, dtype=torch.int64)
    mask[:, seq - valid_tokens :] = 1  # left padding
    with torch.no_grad():
        ref = twins.reference.embeddings_processor.process_hidden_states(hidden_states, mask, padding_side="left")
        prompt_embeds = torch.stack(hidden_states, dim=-1).flatten(2, 3)  # as _get_gemma_prompt_embeds packs them
        video, audio, connector_mask = twins.pipe.connectors(prompt_embeds, mask, padding_side="left")
    assert_close(ref.video_encoding, video, f"text connectors, {valid_tokens} of {seq} tokens: video context")
    assert_close(ref.audio_encoding, audio, f"text connectors, {valid_tokens} of {seq} tokens: audio context")
    assert torch.equal(ref.attention_mask, connector_mask)
    assert bool(connector_mask.all())  # registers fill the padding, so every position attends


def test_prompt_to_contexts(twins):
    """End to end from a prompt: ltx-core's GemmaTextEncoder.encode + EmbeddingsProcessor vs the pipeline's
    encode_prompt + connectors (both left-pad to 1024 tokens with the same tiny Gemma). The pipeline then hands the
    connector mask to the transformer while the reference passes context_mask=None; with the 2.0 connectors'
    learnable registers that mask is all ones, so the two agree."""
    prompt = "  a red fox runs through fresh snow, golden hour  "
    with torch.no_grad():
        hidden_states, mask = twins.reference.text_encoder.encode(prompt)
        ref = twins.reference.embeddings_processor.process_hidden_states(hidden_states, mask, padding_side="left")
        embeds, embeds_mask, _, _ = twins.pipe.encode_prompt(prompt, do_classifier_free_guidance=False, device="cpu")
        video, audio, connector_mask = twins.pipe.connectors(embeds, embeds_mask, padding_side="left")
    assert torch.equal(mask, embeds_mask) and mask.shape == (1, 1024) and 0 < int(mask.sum()) < 1024
    assert_close(ref.video_encoding, video, "prompt to contexts (Gemma + connectors): video context")
    assert_close(ref.audio_encoding, audio, "prompt to contexts (Gemma + connectors): audio context")
    assert torch.equal(ref.attention_mask, connector_mask) and bool(connector_mask.all())


# ------------------------------------------------------------------------------------------------ plumbing
def test_twins_share_no_storage(twins):
    """The two sides hold separate copies of every weight, so a parity test cannot pass by aliasing."""

    def pointers(modules):
        return {t.data_ptr() for m in modules for t in list(m.parameters()) + list(m.buffers()) if t.numel()}

    ref = twins.reference
    reference_side = pointers(
        [
            ref.transformer,
            ref.transformer_lora,
            ref.video_encoder,
            ref.video_decoder,
            ref.audio_decoder,
            ref.vocoder,
            ref.upsampler,
            ref.embeddings_processor,
        ]
    )
    pipe = twins.pipe
    diffusers_side = pointers(
        [pipe.transformer, pipe.vae, pipe.audio_vae, pipe.vocoder, pipe.connectors, twins.bundle.latent_upsampler]
    )
    assert reference_side and diffusers_side and not (reference_side & diffusers_side)


def test_checkpoint_layout_is_what_ltx_core_loads(twins):
    """The reference weights, written under the single-file checkpoint's prefixes, are read back by ltx-core's own
    comfy key filters into exactly the reference models' state dicts."""
    from ltx_core.model.audio_vae.model_configurator import (
        AUDIO_VAE_DECODER_COMFY_KEYS_FILTER,
        VOCODER_COMFY_KEYS_FILTER,
    )
    from ltx_core.model.transformer.model_configurator import LTXV_MODEL_COMFY_RENAMING_MAP
    from ltx_core.model.video_vae.model_configurator import (
        VAE_DECODER_COMFY_KEYS_FILTER,
        VAE_ENCODER_COMFY_KEYS_FILTER,
    )
    from ltx_core.text_encoders.gemma.encoders.encoder_configurator import EMBEDDINGS_PROCESSOR_KEY_OPS

    def read(ops, ckpt):
        out = {}
        for key, value in ckpt.items():
            new_key = ops.apply_to_key(key)
            if new_key is None:
                continue
            for result in ops.apply_to_key_value(new_key, value):
                out[result.new_key] = result.new_value
        return out

    ref = twins.reference
    checks = [
        (LTXV_MODEL_COMFY_RENAMING_MAP, ref.transformer.velocity_model),
        (VAE_ENCODER_COMFY_KEYS_FILTER, ref.video_encoder),
        (VAE_DECODER_COMFY_KEYS_FILTER, ref.video_decoder),
        (AUDIO_VAE_DECODER_COMFY_KEYS_FILTER, ref.audio_decoder),
        (VOCODER_COMFY_KEYS_FILTER, ref.vocoder),
        (EMBEDDINGS_PROCESSOR_KEY_OPS, ref.embeddings_processor),
    ]
    for ops, model in checks:
        expected = model.state_dict()
        loaded = read(ops, twins.checkpoint)
        # the transformer prefix also matches the connectors' keys; ltx-core's builder ignores those
        if model is ref.transformer.velocity_model:
            loaded = {k: v for k, v in loaded.items() if k in expected}
        assert set(loaded) == set(expected), (ops.name, sorted(set(loaded) ^ set(expected))[:5])
        for key, value in expected.items():
            assert torch.equal(loaded[key], value), (ops.name, key)


def test_configs_are_the_2_0_variant(twins):
    transformer = twins.pipe.transformer.config
    velocity = twins.reference.transformer.velocity_model
    assert velocity.rope_type.value == transformer.rope_type == "split"
    assert velocity.double_precision_rope and transformer.rope_double_precision
    assert len(velocity.transformer_blocks) == transformer.num_layers >= 2
    assert twins.pipe.connectors.config.rope_type == "split" and twins.pipe.connectors.config.rope_double_precision
    assert twins.pipe.vae_spatial_compression_ratio == 32 and twins.pipe.vae_temporal_compression_ratio == 8
    assert twins.bundle.distilled_adapter in twins.pipe.transformer.peft_config


def test_reference_pipeline_components(twins):
    components = twins.reference.components
    assert components.dtype == torch.float32 and components.device.type == "cpu"
    assert components.video_latent_channels == VIDEO_LATENT_CHANNELS
