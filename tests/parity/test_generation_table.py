"""The per-generation table's Lightricks values against ltx-pipelines 1.0.0's own constants."""

from __future__ import annotations

from . import reference  # noqa: F401  (before any ltx_core import)
from .test_recipes import reference_params


def test_guidance_and_steps_are_ltx_pipelines_params():
    from ltx_pipelines.utils.constants import LTX_2_3_PARAMS, LTX_2_PARAMS

    from pipelines.generations import generation

    for name, params in (("ltx-2-19b", LTX_2_PARAMS), ("ltx-2.3-22b", LTX_2_3_PARAMS)):
        row = generation(name)
        policy = row.guidance_policy("ltx-pipelines")
        assert row.num_inference_steps == params.num_inference_steps, name
        assert reference_params(policy.video) == params.video_guider_params, name
        assert reference_params(policy.audio) == params.audio_guider_params, name


def test_model_version_detection_agrees_with_detect_params(tmp_path):
    """ltx-pipelines' detect_params and the table read the same metadata entry to the same generation."""
    import torch
    from ltx_pipelines.utils.constants import LTX_2_3_PARAMS, LTX_2_PARAMS, detect_params
    from safetensors.torch import save_file

    from pipelines.generations import detect_generation

    for version, params, expected in (("2.3.0", LTX_2_3_PARAMS, "ltx-2.3-22b"), ("2.0", LTX_2_PARAMS, None)):
        folder = tmp_path / version
        folder.mkdir()
        file = folder / "checkpoint.safetensors"
        save_file({"x": torch.zeros(1)}, str(file), metadata={"model_version": version})
        assert detect_params(str(file)) is params
        assert detect_generation(folder) == expected


def test_negative_prompt_is_lightricks_default():
    from ltx_pipelines.utils.constants import DEFAULT_NEGATIVE_PROMPT

    from pipelines.generations import GENERATIONS

    assert all(row.negative_prompt == DEFAULT_NEGATIVE_PROMPT for row in GENERATIONS.values())
