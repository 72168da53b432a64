"""Fast unit tests of size planning, image preparation, chunked decode, audio fitting and the sigma schedule
(muxing through ffmpeg is in tests/integration/test_mux.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipelines.conditioning import cover_and_crop
from pipelines.decode import decode_video_chunks, to_uint8_frames
from pipelines.generate import center_crop_frames, plan_generation_size
from pipelines.mux import fit_audio_length


@pytest.mark.parametrize(
    "requested,expected",
    [
        ((720, 1280, 181), (736, 1280, 185)),
        ((256, 256, 9), (256, 256, 9)),
        ((257, 300, 10), (288, 320, 17)),
        ((1280, 1280, 1), (1280, 1280, 1)),
        ((300, 256, 400), (320, 256, 401)),
        ((256, 256, 2), (256, 256, 9)),
    ],
)
def test_plan_generation_size_snaps_up(requested, expected):
    size = plan_generation_size(*requested)
    assert (size.width, size.height, size.num_frames) == expected
    assert (size.out_width, size.out_height, size.out_num_frames) == requested


def test_cover_and_crop_keeps_aspect_ratio():
    # 400x100 image: left quarter blue, middle half red, right quarter green.
    pixels = np.zeros((100, 400, 3), dtype=np.uint8)
    pixels[:, :100] = (0, 0, 255)
    pixels[:, 100:300] = (255, 0, 0)
    pixels[:, 300:] = (0, 255, 0)
    import torch

    scaled = cover_and_crop(torch.from_numpy(pixels), 64, 64)  # [1, 3, 1, 64, 64] in [-1, 1]
    assert scaled.shape == (1, 3, 1, 64, 64)
    out = ((scaled[0, :, 0].permute(1, 2, 0) + 1) * 127.5).numpy()
    # Cover-scaling to height 64 makes it 256 wide; the central 64 columns are all red (no stretch).
    assert (np.abs(out.astype(int) - (255, 0, 0)).max(axis=-1) < 40).all()


def test_center_crop_frames():
    frames = torch.arange(2 * 6 * 8 * 3).reshape(2, 6, 8, 3)
    cropped = center_crop_frames(frames, 5, 3)
    assert cropped.shape == (2, 3, 5, 3)
    assert torch.equal(cropped, frames[:, 1:4, 1:6])


def test_chunked_decode_matches_one_shot_decode():
    from pipelines.tiny import _build_video_vae

    vae = _build_video_vae()
    latents = torch.randn(1, vae.config.latent_channels, 4, 3, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = to_uint8_frames(vae.decode(latents, None, return_dict=False)[0])
    for chunk_frames in (1, 7, 24):
        got = torch.cat(list(decode_video_chunks(vae, latents, num_frames=20, chunk_frames=chunk_frames)))
        assert got.shape == (20, 96, 64, 3)
        assert torch.equal(got, expected[:20])


def test_fit_audio_length_pads_and_trims():
    audio = np.ones((2, 10), dtype=np.float32)
    assert fit_audio_length(audio, 4).shape == (2, 4)
    padded = fit_audio_length(audio, 15)
    assert padded.shape == (2, 15) and (padded[:, 10:] == 0).all()


def test_schedule_is_finite_and_ends_on_the_terminal_sigma_for_every_step_count():
    import torch

    from pipelines.schedule import TERMINAL_SIGMA, ltx2_sigmas

    for steps in (2, 3, 8, 40, 100):
        sigmas = ltx2_sigmas(steps)
        assert torch.isfinite(sigmas).all() and len(sigmas) == steps + 1
        assert sigmas[0] == pytest.approx(1.0, abs=1e-6) and sigmas[-1] == 0.0
        assert sigmas[-2] == pytest.approx(TERMINAL_SIGMA, abs=1e-6)
        assert (sigmas[1:] < sigmas[:-1]).all()


def test_schedule_needs_two_steps():
    from pipelines.schedule import ltx2_sigmas

    with pytest.raises(ValueError, match="steps: must be at least 2"):
        ltx2_sigmas(1)
