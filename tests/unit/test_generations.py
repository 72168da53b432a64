"""The per-generation table (pipelines/generations.py) and how a weights folder is recognised."""

from __future__ import annotations

import json
import struct
import subprocess
import sys

import pytest

from pipelines import MODELS
from pipelines.generations import (
    GENERATIONS,
    LTX_2_3_22B,
    detect_generation,
    generation,
    model_versions,
    safetensors_metadata,
)


def write_safetensors_header(path, metadata: dict[str, str] | None = None) -> None:
    """A whole safetensors file holding one 1-byte tensor, with ``metadata`` in its header."""
    header: dict = {"x": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}
    if metadata is not None:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0")


def test_ltx_2_0_keeps_its_numbers():
    ltx2, tiny = generation("ltx-2-19b"), generation("tiny")
    assert (ltx2.num_inference_steps, ltx2.x264_preset, ltx2.x264_crf, ltx2.max_sequence_length) == (
        40, "veryfast", 19, 1024,
    )
    assert (tiny.num_inference_steps, tiny.x264_preset, tiny.x264_crf, tiny.max_sequence_length) == (
        2, "ultrafast", 36, 128,
    )
    assert ltx2.guidance_names == ("ltx-pipelines", "ltx-2.0-release")
    assert ltx2.guidance_policy("ltx-pipelines").video.stg_blocks == (29,)


def test_ltx_2_3_row():
    row = generation("ltx-2.3-22b")
    assert row.num_inference_steps == 30 and row.model_version_prefix == "2.3"
    policy = row.guidance_policy("ltx-pipelines")
    assert policy.video.stg_blocks == policy.audio.stg_blocks == (28,)
    assert (policy.video.cfg, policy.audio.cfg, policy.video.modality, policy.video.rescale) == (3, 7, 3, 0.7)
    assert row.audio_sample_rate == 48000 and not row.duration_head
    with pytest.raises(ValueError, match="offers ltx-pipelines"):
        row.guidance_policy("ltx-2.0-release")
    tiny = generation("tiny-2.3")
    assert tiny.tiny_of == "ltx-2.3-22b" and tiny.guidance_policies == row.guidance_policies
    assert tiny.num_inference_steps == 2


def test_every_model_name_is_a_row_and_recipes_are_the_runners():
    from pipelines.recipes import RECIPES

    assert set(MODELS) == set(GENERATIONS) >= {"tiny", "tiny-2.3", "ltx-2-19b", "ltx-2.3-22b"}
    assert all(set(g.recipes) <= set(RECIPES) for g in GENERATIONS.values())
    with pytest.raises(ValueError, match="unknown model"):
        generation("ltx-9")


@pytest.mark.parametrize("frames, expected", [(1, 1), (2, 9), (9, 9), (10, 17), (181, 185)])
def test_frames_snap_to_8k_plus_1(frames, expected):
    assert LTX_2_3_22B.frames_for(frames) == expected


def test_detect_generation_reads_model_version_metadata(tmp_path):
    assert detect_generation(tmp_path / "absent") is None
    assert detect_generation(tmp_path) is None
    write_safetensors_header(tmp_path / "ltx-2.3-22b-dev.safetensors", {"model_version": "2.3.0", "config": "{}"})
    write_safetensors_header(tmp_path / "other.safetensors")
    assert safetensors_metadata(tmp_path / "ltx-2.3-22b-dev.safetensors")["model_version"] == "2.3.0"
    assert model_versions(tmp_path) == {"ltx-2.3-22b-dev.safetensors": "2.3.0"}
    assert detect_generation(tmp_path) == "ltx-2.3-22b"


def test_detect_generation_falls_back_to_the_diffusers_folder(tmp_path):
    (tmp_path / "model_index.json").write_text("{}")
    write_safetensors_header(tmp_path / "ltx-2-19b-dev-fp8.safetensors", {"model_version": "2.0.1"})
    assert detect_generation(tmp_path) == "ltx-2-19b"


def test_unreadable_headers_have_no_metadata(tmp_path):
    (tmp_path / "broken.safetensors").write_bytes(b"\xff" * 4)
    (tmp_path / "huge.safetensors").write_bytes(struct.pack("<Q", 1 << 40))
    assert safetensors_metadata(tmp_path / "broken.safetensors") == {}
    assert safetensors_metadata(tmp_path / "huge.safetensors") == {}
    assert detect_generation(tmp_path) is None


def test_the_table_is_torch_free():
    code = "import sys, pipelines, pipelines.generations; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
