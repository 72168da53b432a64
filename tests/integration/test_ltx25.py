"""LTX-2.5 on the CPU: the tiny LTX-2.5 through the worker's generator (real diffusers, real ffmpeg, probed
with PyAV), and the same model written to disk in LTX-2.5's per-component layout by diffusers' own writers,
checked, recognised and loaded back by the loader the real weights go through."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import pipelines
from pipelines.generations import check_weights, detect_generation
from pipelines.interface import JobSpec
from pipelines.ltx25 import DIFFUSION_DECODING_STAGE, LTX25Generator, decoder_minimum
from pipelines.neighborhood import use_windowed_attention
from pipelines.tiny25 import build_tiny25_components, save_tiny25_weights
from tests.support.media_probe import probe_mp4
from tests.support.pipeline_inputs import sha256, small_spec, write_noise_picture

REPO_ROOT = Path(__file__).resolve().parents[2]
FAST = dict(recipe="one-stage", num_inference_steps=2, x264_preset="ultrafast", x264_crf=36, device="cpu")


@pytest.fixture(scope="module")
def generator():
    return pipelines.load_generator("tiny-2.5", recipe="one-stage")


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("ltx25")
    save_tiny25_weights(directory)
    return directory


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> Path:
    return write_noise_picture(tmp_path_factory.mktemp("img") / "in.png")


def spec(**overrides) -> JobSpec:
    return small_spec("a lighthouse at dusk", **overrides)


@pytest.mark.parametrize(
    "width,height,num_frames,fps",
    [
        (300, 260, 30, 24),  # not multiples of 32, not 8k+1 frames
        (257, 300, 5, 8),  # fewer frames than the diffusion decoder accepts (generated at 9, cut to 5)
    ],
)
def test_tiny_25_returns_the_exact_size_with_48_khz_audio(generator, picture, tmp_path, width, height, num_frames, fps):
    out = tmp_path / "out.mp4"
    result = generator.generate(
        spec(width=width, height=height, num_frames=num_frames, fps=fps), picture, out, lambda *event: None
    )
    info = probe_mp4(out)
    assert (info["width"], info["height"], info["frame_count"]) == (width, height, num_frames)
    assert info["fps"] == pytest.approx(fps)
    assert info["audio_codec"] == "aac" and info["audio_sample_rate"] == 48000
    assert info["audio_duration"] == pytest.approx(num_frames / fps, abs=1 / fps)
    assert set(result.stage_seconds) == {
        "load_image",
        "encode_prompt",
        "denoise",
        "decode_audio",
        "decode_video",
        "mux",
    }


def test_the_diffusion_decode_is_its_own_progress_stage(generator, picture, tmp_path):
    events: list[tuple[str, int, int]] = []
    generator.generate(spec(), picture, tmp_path / "out.mp4", lambda *event: events.append(event))
    stages = [stage for stage, _, _ in events]
    changes = [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s]
    assert changes[:3] == ["encoding_prompt", "denoising", "decoding_audio"]
    assert changes[-1] == "muxing"
    decoding = [(step, total) for stage, step, total in events if stage == DIFFUSION_DECODING_STAGE]
    assert decoding == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert stages.index(DIFFUSION_DECODING_STAGE) < stages.index("muxing")


def test_same_seed_same_bytes_different_seed_different_bytes(generator, picture, tmp_path):
    outputs = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        outputs[name] = tmp_path / f"{name}.mp4"
        generator.generate(spec(seed=seed), picture, outputs[name], lambda *event: None)
    assert sha256(outputs["a"]) == sha256(outputs["b"]) != sha256(outputs["c"])


def test_the_tiny_generator_describes_itself(generator):
    assert isinstance(generator, LTX25Generator)
    assert generator.description.startswith("model tiny-2.5, recipe one-stage (2 steps)")
    with pytest.raises(ValueError, match="offers one-stage"):
        pipelines.load_generator("tiny-2.5", recipe="two-stage")


def test_the_layout_is_checked_recognised_and_loaded_back(weights, picture, tmp_path):
    assert (weights / "modular_model_index.json").is_file() and (weights / "model_index.json").is_file()
    assert check_weights("ltx-2.5", weights) == []
    assert detect_generation(weights) == "ltx-2.5"
    loaded = pipelines.load_generator("ltx-2.5", weights=str(weights), **FAST)
    assert isinstance(loaded, LTX25Generator)
    built = build_tiny25_components()
    for name in ("transformer", "connectors", "text_encoder", "vae", "audio_vae", "vocoder"):
        assert _same_weights(getattr(loaded.pipe, name), built[name]), name
    assert _same_weights(loaded.diffusion_decoder, built["diffusion_decoder"])
    out = tmp_path / "out.mp4"
    loaded.generate(spec(width=300, height=260, num_frames=10, fps=12), picture, out, lambda *event: None)
    info = probe_mp4(out)
    assert (info["width"], info["height"], info["frame_count"], info["audio_sample_rate"]) == (300, 260, 10, 48000)


def _same_weights(module: torch.nn.Module, other: torch.nn.Module) -> bool:
    mine, theirs = module.state_dict(), other.state_dict()
    return mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_the_check_names_each_missing_or_broken_file(weights, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(weights, broken)
    (broken / "diffusion_decoder" / "config.json").unlink()
    shard = broken / "transformer" / "diffusion_pytorch_model.safetensors"
    shard.write_bytes(shard.read_bytes()[:-100])
    shutil.rmtree(broken / "vocoder")
    problems = check_weights("ltx-2.5", broken)
    assert "diffusion_decoder/config.json: missing" in problems
    assert "vocoder/: missing" in problems
    assert any(p.startswith("transformer/diffusion_pytorch_model.safetensors: truncated") for p in problems)
    assert problems[-1] == f"fix: python scripts/download_weights.py --model ltx-2.5 --dest {broken}"
    # The LTX-2 19B layout is not taken for LTX-2.5 (and the other way round).
    assert detect_generation(tmp_path) is None


def test_the_production_decoder_needs_17_frames_and_224_pixels():
    """LTX-2.5's decoder config (diffusers' defaults: its kernels and strides), narrow widths: the minimum the
    generator raises requests to is exactly what the decoder's neighbourhood attention accepts."""
    from diffusers import LTX2VideoDiffusionDecoderModel

    decoder = LTX2VideoDiffusionDecoderModel(
        latent_channels=8,
        decoder_head_dim=8,
        decoder_stage_channels=(16, 8, 8, 8, 8),
        decoder_stage_depths=(1, 1, 1, 1, 1),
        decoder_upsample_channel_reductions=(2, 1, 1, 1),
        decoder_t_emb_dim=16,
    ).eval()
    use_windowed_attention(decoder)  # as the loader does; the check on grid sizes is the attention module's own
    assert decoder_minimum(decoder.config) == (3, 7, 7)
    inner = decoder.decoder
    with torch.no_grad():
        context = inner.forward_stage_4(inner.forward_stages_1_to_3(torch.randn(1, 8, 3, 7, 7)))
        # Stage 5 (pixel diffusion) runs on this grid: it must hold its 11x11x11 kernel.
        assert tuple(context.shape[1:4]) == (17, 56, 56)
        for smaller in ((2, 7, 7), (3, 6, 7), (3, 7, 6)):
            with pytest.raises(ValueError, match="at least its kernel size"):
                decoder.decode(torch.randn(1, 8, *smaller), generator=torch.Generator().manual_seed(0))


def test_download_script_checks_the_layout(weights, tmp_path):
    """scripts/download_weights.py --model ltx-2.5 --check, as a user runs it (offline)."""
    script = [sys.executable, str(REPO_ROOT / "scripts" / "download_weights.py"), "--model", "ltx-2.5"]
    complete = subprocess.run([*script, "--check", str(weights)], capture_output=True, text=True, timeout=60)
    assert complete.returncode == 0 and complete.stdout.strip() == f"complete: {weights}"
    partial = tmp_path / "partial"
    shutil.copytree(weights, partial, ignore=shutil.ignore_patterns("diffusion_decoder"))
    incomplete = subprocess.run([*script, "--check", str(partial)], capture_output=True, text=True, timeout=60)
    assert incomplete.returncode == 1 and "diffusion_decoder/: missing" in incomplete.stdout
    refused = subprocess.run([*script, "--fp8", "--check", str(weights)], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "not for ltx-2.5" in refused.stderr
