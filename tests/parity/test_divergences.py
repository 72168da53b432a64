"""Where the server deliberately does not do what Lightricks' reference does, each difference asserted and
its reason named (docs/fidelity.md, "Deliberate differences")."""

from __future__ import annotations

import tests.parity.reference  # noqa: F401
from pipelines.guidance import POLICIES
from server.api.params import I2VParams


def test_the_request_guidance_scale_is_the_video_cfg_scale_so_segmind_s_default_4_is_not_the_reference_3():
    """Reason: API compatibility. Segmind's contract has one guidance knob, guidance_scale, default 4; a client
    that sends 3 gets exactly LTX_2_PARAMS. Audio CFG stays the reference's 7."""
    from ltx_pipelines.utils.constants import LTX_2_PARAMS

    default = I2VParams(prompt="p", image="https://example.com/i.png").guidance_scale
    policy = POLICIES["ltx-pipelines"].for_request(default, guided=True)
    assert default == 4.0 and LTX_2_PARAMS.video_guider_params.cfg_scale == 3.0
    assert policy.video.cfg == 4.0
    assert policy.audio.cfg == LTX_2_PARAMS.audio_guider_params.cfg_scale == 7.0
    assert POLICIES["ltx-pipelines"].for_request(3.0, guided=True).video == POLICIES["ltx-pipelines"].video


def test_the_negative_prompt_default_is_segmind_s_not_the_reference_s():
    """Reason: API compatibility. The request's negative_prompt is used as sent, and Segmind's contract gives it
    a default of its own; Lightricks' long DEFAULT_NEGATIVE_PROMPT is what their CLI uses when none is given."""
    from ltx_pipelines.utils.constants import DEFAULT_NEGATIVE_PROMPT

    default = I2VParams(prompt="p", image="https://example.com/i.png").negative_prompt
    assert default.startswith("blurry, low quality, still frame")
    assert default != DEFAULT_NEGATIVE_PROMPT


def test_the_distilled_recipe_ignores_guidance_as_the_reference_does():
    policy = POLICIES["ltx-pipelines"].for_request(9.0, guided=False)
    assert not policy.uses_negative_prompt
    for modality in (policy.video, policy.audio):
        assert not (modality.uses_perturbed_pass or modality.uses_isolated_pass) and modality.rescale == 0


def test_the_2_0_release_policy_is_plain_cfg_with_per_modality_timesteps():
    """The other LTX-2.0 release, available as --guidance ltx-2.0-release: one CFG scale (the request's) for
    video and audio, no STG, no modality guidance, no rescale, each modality's own timesteps."""
    policy = POLICIES["ltx-2.0-release"].for_request(4.0, guided=True)
    assert (policy.video.cfg, policy.audio.cfg, policy.cross_timestep) == (4.0, 4.0, False)
    assert not any(m.uses_perturbed_pass or m.uses_isolated_pass or m.rescale for m in (policy.video, policy.audio))


# LTX-2.5 has no Lightricks reference (ltx-pipelines 1.0.0 predates it): its reference is diffusers' own LTX-2.5
# pipeline (tests/parity/test_ltx25.py), and where that pipeline does otherwise, the server keeps the rules it
# follows for every generation.


def test_ltx_2_5_keeps_ltx_2_s_schedule_not_diffusers_shift_by_token_count():
    """Reason: one schedule for every generation. The server runs LTX-2's sigmas (the shift taken at 4,096 tokens
    at every size, last sigma 0.1), as Lightricks' pipelines do; diffusers' LTX-2.5 pipeline shifts them by the
    request's token count, which at 720x1280x121 puts 23 of its 30 steps above sigma 0.9 (the server: 13). The
    loops agree when given the same sigmas (tests/parity/test_ltx25.py)."""
    import numpy as np
    from diffusers.modular_pipelines.ltx2.before_denoise import calculate_shift

    from pipelines.schedule import ltx2_sigmas
    from pipelines.tiny import _build_scheduler  # LTX-2's diffusers scheduler config

    steps, tokens = 30, 16 * (1280 // 32) * (720 // 32)  # 121 frames: 16 latent frames
    scheduler = _build_scheduler()
    mu = calculate_shift(tokens, 1024, 4096, 0.95, 2.05)
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
    theirs, ours = scheduler.sigmas[:-1], ltx2_sigmas(steps)[:-1]
    assert (int((theirs > 0.9).sum()), int((ours > 0.9).sum())) == (23, 13)


def test_ltx_2_5_estimates_the_clean_first_frame_at_sigma_0_by_lightricks_rule_not_at_the_step_s_sigma():
    """Reason: one sampling rule for every generation. Lightricks' rule, the server's, turns each token's velocity
    into x0 at the token's own sigma, 0 on the clean (image) frame, so that frame's estimate is its latent;
    diffusers' LTX-2.5 loop uses the step's sigma for every token. The clean frame's estimate is replaced by the
    image's latent either way, but guidance rescale (0.7 in LTX-2.5's defaults) takes the standard deviation of
    the whole estimate, so the other tokens differ too."""
    from dataclasses import replace
    from types import SimpleNamespace

    import torch
    from diffusers.modular_pipelines.ltx2.denoise import convert_velocity_to_x0

    from pipelines.denoise import _combine, _to_x0
    from pipelines.generations import LTX_2_5

    sigma, generator = 0.6, torch.Generator().manual_seed(0)
    latent = torch.randn(1, 12, 8, generator=generator)
    mask = torch.ones(1, 12)
    mask[:, :4] = 0  # the first latent frame: the image's latent, kept clean
    noisy = mask[0].bool()
    # One velocity per guidance pass: prompt, negative prompt, STG, isolated modalities.
    velocities = torch.randn(4, 1, 12, 8, generator=generator)
    ours = [_to_x0(latent, velocity, mask * sigma) for velocity in velocities]
    theirs = [convert_velocity_to_x0(latent, velocity, 0, SimpleNamespace(sigmas=[sigma])) for velocity in velocities]
    assert all(torch.equal(estimate[:, ~noisy], latent[:, ~noisy]) for estimate in ours)
    assert all(torch.allclose(a[:, noisy], b[:, noisy], atol=1e-6) for a, b in zip(ours, theirs, strict=True))

    guidance = LTX_2_5.guidance_policies[0].video
    plain = replace(guidance, rescale=0.0)
    assert torch.allclose(_combine(plain, *ours)[:, noisy], _combine(plain, *theirs)[:, noisy], atol=1e-5)
    assert guidance.rescale == 0.7
    apart = (_combine(guidance, *ours) - _combine(guidance, *theirs))[:, noisy].abs().max()
    assert apart > 1e-2


def test_ltx_2_5_covers_and_centre_crops_the_image_where_diffusers_stretches_it():
    """Reason: no distortion, and one image rule for every generation. The server scales the conditioning image
    to cover the generated size and centre-crops it, as Lightricks' pipelines do; diffusers' LTX-2.5 pipeline
    resizes it straight to that size (its VAE encoder step's VideoProcessor), stretching an image of another
    aspect ratio."""
    import numpy as np
    import torch
    from diffusers.modular_pipelines.ltx2.encoders import LTX2VaeEncoderStep
    from PIL import Image

    from pipelines.conditioning import cover_and_crop

    pixels = np.full((90, 160, 3), 128, np.uint8)  # 16:9, generated square
    pixels[:, :20] = (255, 0, 0)  # a red band on the left edge
    spec = next(c for c in LTX2VaeEncoderStep().expected_components if c.name == "video_processor")
    theirs = spec.create().preprocess(Image.fromarray(pixels), height=96, width=96)[0]
    ours = cover_and_crop(torch.from_numpy(pixels), 96, 96)[0, :, 0]
    assert theirs.shape == ours.shape == (3, 96, 96)

    def red_columns(image: torch.Tensor) -> int:
        return int(((image[0] > 0.9) & (image[1] < -0.9)).all(dim=0).sum())

    # Stretched: the band keeps its share of the width (20 of 160 columns: 12 of 96). Covered: the image is
    # scaled to 96 rows (171 columns) and 37 are cut from each side, the band with them.
    assert red_columns(theirs) >= 10 and red_columns(ours) == 0
