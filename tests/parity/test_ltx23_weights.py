"""LTX-2.3 weights on disk in the layout Lightricks publishes (single-file checkpoints with their config and
model_version in the metadata, the spatial upscaler, the distilled LoRA, Gemma in gemma/), written from the
tiny 2.3 twins and read back through the server's own code: recognition (--model auto), the --check of the
layout, and the loader, whose models must hold exactly the twins' weights (which the rest of the parity suite
compares with ltx-core). In the parity tier because the files are written from ltx-core's models.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from pipelines.generations import check_weights, detect_generation
from pipelines.weights_single_file import LTX_2_3, TEXT_ENCODER_DIR, SingleFileLayout
from tests.support.servers import REPO_ROOT

from . import reference  # noqa: F401  (before any ltx_core import)
from .twins23 import build_twins_2_3, checkpoint_metadata, upsampler_metadata

DEV, DISTILLED = LTX_2_3.dev[0], LTX_2_3.distilled[0]
LORA, UPSAMPLER = LTX_2_3.distilled_lora[0], LTX_2_3.latent_upsampler[0]


def _contiguous(state: dict) -> dict:
    return {key: value.contiguous() for key, value in state.items()}


def write_ltx23_folder(folder, twins, *, distilled_twins=None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_file(_contiguous(twins.checkpoint), str(folder / DEV), metadata=checkpoint_metadata())
    save_file(_contiguous(twins.lora), str(folder / LORA))
    upsampler_state = twins.reference.upsampler.state_dict()
    save_file(_contiguous(upsampler_state), str(folder / UPSAMPLER), metadata=upsampler_metadata())
    if distilled_twins is not None:
        save_file(_contiguous(distilled_twins.checkpoint), str(folder / DISTILLED), metadata=checkpoint_metadata())
    twins.pipe.text_encoder.save_pretrained(folder / TEXT_ENCODER_DIR)
    twins.pipe.tokenizer.save_pretrained(folder / TEXT_ENCODER_DIR)


@pytest.fixture(scope="module")
def ltx23_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ltx23") / "weights"
    write_ltx23_folder(folder, build_twins_2_3(0), distilled_twins=build_twins_2_3(1))
    return folder


def _base_weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A state dict without LoRA factors and under the base layers' own names (peft wraps adapted layers)."""
    state = module.state_dict()
    return {key.replace(".base_layer.", "."): value for key, value in state.items() if ".lora_" not in key}


def _same_weights(ours: torch.nn.Module, theirs: torch.nn.Module) -> None:
    mine, twin = _base_weights(ours), _base_weights(theirs)
    assert mine.keys() == twin.keys()
    different = [key for key in twin if not torch.equal(mine[key], twin[key])]
    assert not different, different[:5]


def test_the_folder_is_recognised_and_complete(ltx23_folder):
    assert detect_generation(ltx23_folder) == "ltx-2.3-22b"
    for recipe in ("two-stage", "one-stage", "distilled"):
        assert check_weights("ltx-2.3-22b", ltx23_folder, recipe) == [], recipe


def test_the_loader_reads_the_twins_weights(ltx23_folder):
    from pipelines.loader import load_bundle_for

    twins = build_twins_2_3(0)
    bundle = load_bundle_for("ltx-2.3-22b", ltx23_folder, torch.float32, recipe="two-stage")
    for name in ("transformer", "connectors", "vae", "audio_vae", "vocoder", "text_encoder"):
        _same_weights(getattr(bundle.pipe, name), getattr(twins.pipe, name))
    _same_weights(bundle.latent_upsampler, twins.bundle.latent_upsampler)
    assert bundle.distilled_adapter is not None and bundle.distilled_source == "lora"
    # The LoRA, read from Lightricks' key format, is the one the twins carry, factor for factor.
    ours, theirs = bundle.pipe.transformer.state_dict(), twins.pipe.transformer.state_dict()
    factors = [key for key in theirs if ".lora_" in key]
    assert factors and all(torch.equal(ours[key], theirs[key]) for key in factors)


def test_the_distilled_recipe_reads_the_distilled_checkpoint(ltx23_folder):
    from pipelines.loader import load_bundle_for

    other = build_twins_2_3(1)
    bundle = load_bundle_for("ltx-2.3-22b", ltx23_folder, torch.float32, recipe="distilled")
    assert bundle.distilled_source == "checkpoint" and bundle.distilled_checkpoint_file == DISTILLED
    assert bundle.distilled_transformer is bundle.pipe.transformer and bundle.distilled_adapter is None
    _same_weights(bundle.pipe.transformer, other.pipe.transformer)
    _same_weights(bundle.pipe.connectors, other.pipe.connectors)


def test_missing_and_foreign_files_are_named(ltx23_folder, tmp_path):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(ltx23_folder, folder)
    (folder / LORA).unlink()
    (folder / TEXT_ENCODER_DIR / "config.json").unlink()
    save_file({"x": torch.zeros(1)}, str(folder / DEV), metadata={"model_version": "2.0.0", "config": "{}"})
    problems = check_weights("ltx-2.3-22b", folder, "two-stage")
    assert f"{LORA}: missing (or {LTX_2_3.distilled_lora[1]})" in problems
    assert f"{TEXT_ENCODER_DIR}/config.json: missing" in problems
    assert any(p.startswith(f"{DEV}: model_version 2.0.0 is not 2.3.x") for p in problems)
    assert problems[-1] == f"fix: python scripts/download_weights.py --model ltx-2.3-22b --dest {folder}"
    # Without the LoRA, the distilled recipe still runs from the distilled checkpoint; one-stage needs neither.
    assert not any(LORA in p for p in check_weights("ltx-2.3-22b", folder, "distilled"))
    assert not any(LORA in p for p in SingleFileLayout.of(folder).check("one-stage"))


def test_download_script_check_accepts_the_folder(ltx23_folder):
    script = f"{REPO_ROOT}/scripts/download_weights.py"
    result = subprocess.run(
        [sys.executable, script, "--model", "ltx-2.3-22b", "--check", str(ltx23_folder)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"complete: {ltx23_folder}" in result.stdout
    metadata = json.loads(checkpoint_metadata()["config"])
    assert metadata["transformer"]["apply_gated_attention"] is True


def test_a_generator_runs_from_the_folder(ltx23_folder, tmp_path):
    """load_generator end to end on the on-disk layout: an exact-size mp4 with 48 kHz audio."""
    import numpy as np
    from PIL import Image

    import pipelines
    from pipelines.interface import JobSpec
    from tests.support.media_probe import probe_mp4

    image = tmp_path / "image.png"
    Image.fromarray(np.full((48, 80, 3), 120, np.uint8)).save(image)
    generator = pipelines.load_generator("ltx-2.3-22b", weights=str(ltx23_folder), device="cpu", recipe="one-stage",
                                         num_inference_steps=2)  # fmt: skip
    assert "model ltx-2.3-22b" in generator.description and "blocks 28" in generator.guidance_summary
    spec = JobSpec(prompt="p", negative_prompt="n", width=100, height=60, num_frames=10, fps=24, seed=3,
                   guidance_scale=3.0)  # fmt: skip
    output = tmp_path / "out.mp4"
    generator.generate(spec, image, output, lambda *args: None)
    info = probe_mp4(output)
    assert (info["width"], info["height"], info["frame_count"]) == (100, 60, 10)
    assert info["audio_sample_rate"] == 48000 and info["audio_channels"] == 2
