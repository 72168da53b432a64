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
