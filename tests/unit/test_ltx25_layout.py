"""LTX-2.5's per-component layout without any weights: which hub files are fetched, what a listing lacks,
and how a folder's index files say it holds LTX-2.5 (pipelines/ltx25_layout.py, torch-free)."""

from __future__ import annotations

import json

from pipelines.generations import detect_generation
from pipelines.ltx25_layout import is_ltx25_folder, layout_gaps, select_hub_files

HUB_LISTING = [
    ".gitattributes",
    "README.md",
    "model_index.json",
    "modular_model_index.json",
    "transformer/config.json",
    "transformer/diffusion_pytorch_model-00001-of-00002.safetensors",
    "transformer/diffusion_pytorch_model-00002-of-00002.safetensors",
    "transformer/diffusion_pytorch_model.safetensors.index.json",
    "connectors/config.json",
    "connectors/diffusion_pytorch_model.safetensors",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "tokenizer/tokenizer.json",
    "tokenizer/tokenizer_config.json",
    "tokenizer/.gitattributes",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
    "audio_vae/config.json",
    "audio_vae/diffusion_pytorch_model.safetensors",
    "vocoder/config.json",
    "vocoder/diffusion_pytorch_model.safetensors",
    "scheduler/scheduler_config.json",
    "diffusion_decoder/config.json",
    "diffusion_decoder/diffusion_pytorch_model.safetensors",
    "duration_head/config.json",
    "duration_head/diffusion_pytorch_model.safetensors",
    "prompt_enhancer/model.safetensors",
    "processor/processor_config.json",
]


def test_the_server_fetches_both_indexes_and_every_folder_it_reads():
    selected = select_hub_files(HUB_LISTING)
    assert "model_index.json" in selected and "modular_model_index.json" in selected
    assert "diffusion_decoder/diffusion_pytorch_model.safetensors" in selected
    assert len([name for name in selected if name.startswith("transformer/")]) == 4
    # Never read by the server: the duration head, the prompt enhancer and its processor; nor hub dotfiles.
    assert not any(name.startswith(("duration_head/", "prompt_enhancer/", "processor/")) for name in selected)
    assert not any(name.rsplit("/", 1)[-1].startswith(".") or name == "README.md" for name in selected)
    assert layout_gaps(selected) == []


def test_a_listing_without_the_diffusion_decoder_is_refused_before_downloading():
    listing = [name for name in HUB_LISTING if not name.startswith("diffusion_decoder/")]
    assert layout_gaps(select_hub_files(listing)) == ["diffusion_decoder/"]
    assert layout_gaps([]) == [
        "model_index.json",
        "transformer/",
        "connectors/",
        "text_encoder/",
        "tokenizer/",
        "vae/",
        "audio_vae/",
        "vocoder/",
        "scheduler/",
        "diffusion_decoder/",
    ]


def _index(folder, name: str, values: dict) -> None:
    (folder / name).write_text(json.dumps(values))


def test_ltx_2_5_is_recognised_by_its_modular_index(tmp_path):
    _index(tmp_path, "model_index.json", {"_class_name": "LTX2Pipeline"})
    _index(tmp_path, "modular_model_index.json", {"_class_name": "LTX25ModularPipeline"})
    assert is_ltx25_folder(tmp_path) and detect_generation(tmp_path) == "ltx-2.5"
    _index(tmp_path, "modular_model_index.json", {"_class_name": "LTX2ModularPipeline"})
    assert not is_ltx25_folder(tmp_path) and detect_generation(tmp_path) == "ltx-2-19b"


def test_without_a_modular_index_gemma_4_or_a_diffusion_decoder_marks_it(tmp_path):
    text_encoder = ["transformers", "Gemma3ForConditionalGeneration"]
    _index(tmp_path, "model_index.json", {"_class_name": "LTX2Pipeline", "text_encoder": text_encoder})
    assert detect_generation(tmp_path) == "ltx-2-19b"  # LTX-2 19B's own repository
    text_encoder[1] = "Gemma4UnifiedForConditionalGeneration"
    _index(tmp_path, "model_index.json", {"_class_name": "LTX2Pipeline", "text_encoder": text_encoder})
    assert detect_generation(tmp_path) == "ltx-2.5"
    gemma3 = ["transformers", "Gemma3ForConditionalGeneration"]
    decoder = ["diffusers", "LTX2VideoDiffusionDecoderModel"]
    _index(tmp_path, "model_index.json", {"text_encoder": gemma3, "diffusion_decoder": decoder})
    assert detect_generation(tmp_path) == "ltx-2.5"
    (tmp_path / "model_index.json").write_text("not json")
    assert not is_ltx25_folder(tmp_path)
