"""The real-model path on the CPU: the tiny LTX-2 written to disk in the 19B's folder layout (diffusers
folder + latent upsampler + stage-2 LoRA) and loaded by the same loader as LTX-2 19B, through every
recipe, every offload mode that runs on a CPU, and fp8 storage; plus Lightricks' single-file
checkpoints (the dev fp8 one, the distilled ones), written here from the tiny transformer."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from PIL import Image

import pipelines
from pipelines.interface import JobSpec
from pipelines.tiny import save_tiny_weights
from tests.support.media_probe import probe_mp4

FAST = dict(num_inference_steps=2, x264_preset="ultrafast", x264_crf=36, device="cpu")


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("weights")
    save_tiny_weights(directory)
    return directory


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "in.png"
    Image.radial_gradient("L").convert("RGB").resize((200, 300)).save(path)
    return path


def params(**overrides) -> JobSpec:
    values = dict(
        prompt="a lighthouse at dusk",
        negative_prompt="blurry",
        width=300,
        height=260,
        num_frames=10,
        fps=12,
        seed=7,
        guidance_scale=4.0,
    )
    values.update(overrides)
    return JobSpec(**values)


def generate(generator, picture: Path, out: Path, **overrides) -> dict:
    generator.generate(params(**overrides), picture, out, lambda *args: None)
    return probe_mp4(out)


@pytest.mark.parametrize("recipe", ["two-stage", "one-stage", "distilled"])
def test_every_recipe_loads_from_disk_and_returns_the_exact_size(tiny_weights, picture, tmp_path, recipe):
    generator = pipelines.load_generator("ltx-2-19b", weights=str(tiny_weights), recipe=recipe, **FAST)
    info = generate(generator, picture, tmp_path / "out.mp4")
    assert (info["width"], info["height"], info["frame_count"]) == (300, 260, 10)
    assert info["audio_codec"] == "aac" and abs(info["audio_duration"] - 10 / 12) <= 1 / 12
    assert f"recipe {recipe}" in generator.description and "offload none" in generator.description
    says_distilled = "distilled: base model + distilled LoRA (ltx-2-19b-distilled.safetensors not in" in (
        generator.description
    )
    assert says_distilled == (recipe == "distilled")


def test_two_stage_generates_at_multiples_of_64_and_one_stage_at_multiples_of_32(tiny_weights):
    two = pipelines.load_generator("ltx-2-19b", weights=str(tiny_weights), recipe="two-stage", **FAST)
    one = pipelines.load_generator("ltx-2-19b", weights=str(tiny_weights), recipe="one-stage", **FAST)
    assert two.spec.spatial_factor * two.pipe.vae_spatial_compression_ratio == 64
    assert one.spec.spatial_factor * one.pipe.vae_spatial_compression_ratio == 32
    assert (two.spec.total_steps, one.spec.total_steps) == (2 + 3, 2)


@pytest.mark.parametrize("offload", ["text-encoder", "model", "group", "sequential"])
def test_offload_modes_that_run_on_a_cpu_give_the_same_video(tiny_weights, picture, tmp_path, offload):
    resident = pipelines.load_generator("ltx-2-19b", weights=str(tiny_weights), offload="none", **FAST)
    offloaded = pipelines.load_generator("ltx-2-19b", weights=str(tiny_weights), offload=offload, **FAST)
    assert f"offload {offload}" in offloaded.description
    generate(resident, picture, tmp_path / "resident.mp4")
    info = generate(offloaded, picture, tmp_path / "offloaded.mp4")
    assert (info["width"], info["height"], info["frame_count"]) == (300, 260, 10)
    # Offloading moves weights, never changes arithmetic: the same bytes.
    assert _digest(tmp_path / "offloaded.mp4") == _digest(tmp_path / "resident.mp4")


def test_fp8_storage_of_the_transformer_still_makes_the_video(tiny_weights, picture, tmp_path):
    import torch

    generator = pipelines.load_generator("ltx-2-19b", weights=str(tiny_weights), fp8=True, **FAST)
    to_q = generator.pipe.transformer.transformer_blocks[0].attn1.to_q
    stored = to_q.base_layer
    assert stored.weight_fp8.dtype == torch.float8_e4m3fn and stored.weight_scale.dtype == torch.float32
    assert to_q.lora_A["stage2_distilled"].weight_fp8.dtype == torch.float8_e4m3fn  # the LoRA too
    info = generate(generator, picture, tmp_path / "fp8.mp4")
    assert (info["width"], info["height"], info["frame_count"]) == (300, 260, 10)


def test_the_stage_two_lora_is_loaded_and_off_between_stages(tiny_weights):
    generator = pipelines.load_generator("ltx-2-19b", weights=str(tiny_weights), **FAST)
    pipe = generator.pipe
    assert pipe.get_list_adapters() == {"transformer": ["stage2_distilled"]}
    lora_layer = pipe.transformer.transformer_blocks[0].attn1.to_q
    assert lora_layer.disable_adapters  # stage 1 and decoding run without it


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# diffusers name -> Lightricks' original name: the inverse of diffusers' single-file converter's renames.
_TO_ORIGINAL_NAMES = {
    "proj_in": "patchify_proj",
    "av_cross_attn_video_scale_shift": "av_ca_video_scale_shift_adaln_single",
    "av_cross_attn_video_a2v_gate": "av_ca_a2v_gate_adaln_single",
    "av_cross_attn_audio_scale_shift": "av_ca_audio_scale_shift_adaln_single",
    "av_cross_attn_audio_v2a_gate": "av_ca_v2a_gate_adaln_single",
    "video_a2v_cross_attn_scale_shift_table": "scale_shift_table_a2v_ca_video",
    "audio_a2v_cross_attn_scale_shift_table": "scale_shift_table_a2v_ca_audio",
    "norm_q": "q_norm",
    "norm_k": "k_norm",
}


def _original_name(name: str) -> str:
    for diffusers_name, original in _TO_ORIGINAL_NAMES.items():
        name = name.replace(diffusers_name, original)
    for diffusers_prefix, original in (("time_embed.", "adaln_single."), ("audio_time_embed.", "audio_adaln_single.")):
        if name.startswith(diffusers_prefix):
            name = original + name[len(diffusers_prefix) :]
    return "model.diffusion_model." + name


# diffusers' LTX2TextConnectors name -> Lightricks' original name (what ltx-core's embeddings processor reads).
_TO_ORIGINAL_CONNECTOR_PREFIXES = {
    "text_proj_in.": "text_embedding_projection.aggregate_embed.",
    "video_connector.": "model.diffusion_model.video_embeddings_connector.",
    "audio_connector.": "model.diffusion_model.audio_embeddings_connector.",
}
_TO_ORIGINAL_CONNECTOR_SEGMENTS = {
    "transformer_blocks": "transformer_1d_blocks",
    "norm_q": "q_norm",
    "norm_k": "k_norm",
}


def _original_connector_name(name: str) -> str:
    for diffusers_prefix, original in _TO_ORIGINAL_CONNECTOR_PREFIXES.items():
        if name.startswith(diffusers_prefix):
            segments = name[len(diffusers_prefix) :].split(".")
            return original + ".".join(_TO_ORIGINAL_CONNECTOR_SEGMENTS.get(s, s) for s in segments)
    raise KeyError(name)


def write_checkpoint(transformer, path: Path, *, fp8: bool, connectors=None) -> None:
    """The transformer (and the text connectors, when given) as Lightricks ships single-file checkpoints,
    with bundled parts the loader skips; with ``fp8``, e4m3 matrices, each with a per-tensor scale."""
    import torch
    from safetensors.torch import save_file

    tensors = {}
    named = [(_original_name(name), value) for name, value in transformer.state_dict().items()]
    if connectors is not None:
        named += [(_original_connector_name(name), value) for name, value in connectors.state_dict().items()]
    for key, value in named:
        if fp8 and value.ndim == 2 and key.endswith(".weight"):
            scale = value.abs().max().clamp(min=1e-12) / 448.0  # e4m3's largest normal value
            tensors[key] = (value / scale).to(torch.float8_e4m3fn)
            tensors[f"{key}_scale"] = scale.reshape(()).float()
        else:
            tensors[key] = value.contiguous()
    tensors["vae.per_channel_statistics.mean-of-means"] = torch.zeros(4)  # bundled, ignored
    save_file(tensors, str(path))


def write_fp8_checkpoint(transformer, path: Path) -> None:
    write_checkpoint(transformer, path, fp8=True)


def test_the_test_checkpoint_names_are_what_diffusers_converter_reads():
    # write_checkpoint's names must be the inverse of diffusers' renames, or the tests below prove nothing.
    from diffusers.loaders.single_file_utils import convert_ltx2_transformer_to_diffusers

    from pipelines.tiny import build_tiny_pipeline

    names = list(build_tiny_pipeline().transformer.state_dict())
    converted = convert_ltx2_transformer_to_diffusers({_original_name(name): name for name in names})
    assert converted == {name: name for name in names}


def test_the_test_checkpoint_connector_names_are_what_the_loader_reads():
    # The same for the text connectors and the server's own mapping (checked against ltx-core's key filters in
    # tests/parity/test_checkpoint_text_path.py).
    from pipelines.checkpoint_keys import convert_connectors_to_diffusers
    from pipelines.tiny import build_tiny_pipeline

    names = list(build_tiny_pipeline().connectors.state_dict())
    original = {_original_connector_name(name): name for name in names}
    assert all(key.startswith(("model.diffusion_model.", "text_embedding_projection.")) for key in original)
    assert convert_connectors_to_diffusers(original) == {name: name for name in names}


def test_the_fp8_checkpoint_replaces_the_bf16_transformer_and_its_scales_are_applied(tiny_weights, picture, tmp_path):
    import shutil

    import torch
    from diffusers import LTX2VideoTransformer3DModel

    from pipelines.weights import FP8_CHECKPOINT_FILE, check_weights

    fp8_weights = tmp_path / "weights"
    shutil.copytree(tiny_weights, fp8_weights)
    reference = LTX2VideoTransformer3DModel.from_pretrained(tiny_weights / "transformer")
    for shard in (fp8_weights / "transformer").glob("*.safetensors"):
        shard.unlink()
    write_fp8_checkpoint(reference, fp8_weights / FP8_CHECKPOINT_FILE)
    assert check_weights(fp8_weights) == []

    generator = pipelines.load_generator("ltx-2-19b", weights=str(fp8_weights), **FAST)
    assert "transformer stored in fp8" in generator.description
    stored = generator.pipe.transformer.transformer_blocks[0].attn1.to_q.base_layer
    original = reference.transformer_blocks[0].attn1.to_q.weight
    assert stored.weight_fp8.dtype == torch.float8_e4m3fn
    # Within e4m3's precision (3 mantissa bits: 1/16 relative) of the original, tiny values included:
    # the checkpoint's scales were applied, and re-storing with the same scale adds no second rounding.
    assert torch.allclose(stored.weight, original, rtol=1 / 16, atol=original.abs().max().item() / 2**9)
    info = generate(generator, picture, tmp_path / "fp8ckpt.mp4")
    assert (info["width"], info["height"], info["frame_count"]) == (300, 260, 10)


# ---- Lightricks' full distilled checkpoint: --recipe distilled runs it, no LoRA --------------------------


def _changed(module, seed: int):
    import torch

    torch.manual_seed(seed)
    with torch.no_grad():
        for tensor in module.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(torch.randn_like(tensor) * 0.05 + 0.01)
    return module


def _distilled_transformer(base_dir: Path):
    """A stand-in for the distilled model: the tiny base transformer with every tensor changed."""
    from diffusers import LTX2VideoTransformer3DModel

    return _changed(LTX2VideoTransformer3DModel.from_pretrained(base_dir / "transformer"), 11)


def _folder_connectors(base_dir: Path):
    from diffusers.pipelines.ltx2 import LTX2TextConnectors

    return LTX2TextConnectors.from_pretrained(base_dir / "connectors")


def _distilled_connectors(base_dir: Path):
    """The distilled checkpoint's text connectors: the folder's (connectors/) with every tensor changed."""
    return _changed(_folder_connectors(base_dir), 12)


@pytest.fixture(scope="module")
def distilled_weights(tiny_weights, tmp_path_factory):
    """tiny_weights plus ltx-2-19b-distilled.safetensors (the layout `download_weights.py --distilled` makes);
    returns the folder and the transformer and text connectors the file holds (both unlike the folder's)."""
    import shutil

    from pipelines.weights import DISTILLED_CHECKPOINT_FILE

    folder = tmp_path_factory.mktemp("distilled") / "weights"
    shutil.copytree(tiny_weights, folder)
    distilled = _distilled_transformer(tiny_weights)
    connectors = _distilled_connectors(tiny_weights)
    write_checkpoint(distilled, folder / DISTILLED_CHECKPOINT_FILE, fp8=False, connectors=connectors)
    return folder, distilled, connectors


def _same_weights(module, reference) -> bool:
    import torch

    state, expected = module.state_dict(), reference.state_dict()
    return state.keys() == expected.keys() and all(torch.equal(state[k], expected[k]) for k in expected)


def test_the_distilled_recipe_runs_the_distilled_checkpoint_instead_of_the_base_model_and_lora(distilled_weights):
    import torch

    from pipelines.loader import describe_distilled_source, load_bundle_from_weights
    from pipelines.weights import check_weights

    folder, distilled, connectors = distilled_weights
    assert check_weights(folder) == []
    bundle = load_bundle_from_weights(folder, torch.float32, recipe="distilled")
    assert bundle.distilled_source == "checkpoint"
    assert bundle.distilled_checkpoint_file == "ltx-2-19b-distilled.safetensors"
    # One transformer, the file's: pipe.transformer IS the distilled one, so placement covers it.
    assert bundle.distilled_transformer is bundle.pipe.transformer
    assert _same_weights(bundle.pipe.transformer, distilled)
    # No LoRA: every stage runs the checkpoint as it is.
    assert bundle.distilled_adapter is None and not bundle.pipe.get_list_adapters().get("transformer")
    assert not bundle.fp8_checkpoint
    # The text path is the file's too (Lightricks' distilled pipeline builds it from the checkpoint it runs).
    assert bundle.distilled_connectors
    assert _same_weights(bundle.pipe.connectors, connectors)
    assert not _same_weights(bundle.pipe.connectors, _folder_connectors(folder))
    assert describe_distilled_source(bundle, folder) == (
        "distilled: checkpoint ltx-2-19b-distilled.safetensors (transformer and text connectors)"
    )


@pytest.mark.parametrize("recipe", ["two-stage", "one-stage"])
def test_other_recipes_never_load_the_distilled_checkpoint(distilled_weights, tiny_weights, recipe):
    import torch
    from diffusers import LTX2VideoTransformer3DModel

    from pipelines.loader import load_bundle_from_weights

    folder, distilled, connectors = distilled_weights
    bundle = load_bundle_from_weights(folder, torch.float32, recipe=recipe)
    assert bundle.distilled_source == "lora" and bundle.distilled_transformer is None
    assert not bundle.distilled_connectors
    assert _same_weights(bundle.pipe.connectors, _folder_connectors(tiny_weights))
    assert not _same_weights(bundle.pipe.connectors, connectors)
    assert bundle.distilled_adapter == "stage2_distilled"
    base = LTX2VideoTransformer3DModel.from_pretrained(tiny_weights / "transformer")
    # The LoRA wraps the matrices, so compare one wrapped matrix's base layer with both candidates.
    weight = bundle.pipe.transformer.transformer_blocks[0].attn1.to_q.base_layer.weight
    assert torch.equal(weight, base.transformer_blocks[0].attn1.to_q.weight)
    assert not torch.equal(weight, distilled.transformer_blocks[0].attn1.to_q.weight)


def test_without_the_checkpoint_the_distilled_recipe_uses_the_base_model_and_the_lora(tiny_weights):
    import torch

    from pipelines.loader import describe_distilled_source, load_bundle_from_weights

    bundle = load_bundle_from_weights(tiny_weights, torch.float32, recipe="distilled")
    assert bundle.distilled_source == "lora" and bundle.distilled_transformer is None
    assert bundle.distilled_adapter == "stage2_distilled" and bundle.distilled_checkpoint_file is None
    assert not bundle.distilled_connectors
    assert _same_weights(bundle.pipe.connectors, _folder_connectors(tiny_weights))
    assert describe_distilled_source(bundle, "weights/") == (
        "distilled: base model + distilled LoRA (ltx-2-19b-distilled.safetensors not in weights/)"
    )


def test_the_fp8_distilled_checkpoint_has_its_scales_applied_and_is_stored_in_fp8(tiny_weights, tmp_path):
    import shutil

    import torch

    from pipelines.loader import load_bundle_from_weights, place_bundle, store_transformer_in_fp8
    from pipelines.weights import DISTILLED_FP8_CHECKPOINT_FILE

    folder = tmp_path / "weights"
    shutil.copytree(tiny_weights, folder)
    distilled = _distilled_transformer(tiny_weights)
    connectors = _distilled_connectors(tiny_weights)
    write_checkpoint(distilled, folder / DISTILLED_FP8_CHECKPOINT_FILE, fp8=True, connectors=connectors)
    bundle = load_bundle_from_weights(folder, torch.float32, recipe="distilled")
    assert bundle.distilled_source == "checkpoint" and bundle.fp8_checkpoint
    assert bundle.distilled_checkpoint_file == DISTILLED_FP8_CHECKPOINT_FILE
    loaded = bundle.pipe.transformer.transformer_blocks[0].attn1.to_q.weight
    original = distilled.transformer_blocks[0].attn1.to_q.weight
    assert torch.allclose(loaded, original, rtol=1 / 16, atol=original.abs().max().item() / 2**9)
    # Connector matrices stored in fp8 have their scales applied too (the rest is stored as it is).
    assert bundle.distilled_connectors
    for name, expected in connectors.state_dict().items():
        value = bundle.pipe.connectors.state_dict()[name]
        if expected.ndim == 2:
            assert torch.allclose(value, expected, rtol=1 / 16, atol=expected.abs().max().item() / 2**9), name
        else:
            assert torch.equal(value, expected), name
    # What load_generator does next: fp8 storage and placement reach the distilled transformer.
    store_transformer_in_fp8(bundle, torch.float32)
    place_bundle(bundle, "none", torch.device("cpu"))
    stored = bundle.distilled_transformer.transformer_blocks[0].attn1.to_q
    assert stored.weight_fp8.dtype == torch.float8_e4m3fn and bundle.distilled_transformer is bundle.pipe.transformer


def test_a_distilled_checkpoint_without_text_connectors_keeps_the_folders_and_says_so(tiny_weights, tmp_path):
    import shutil

    import torch

    from pipelines.loader import describe_distilled_source, load_bundle_from_weights
    from pipelines.weights import DISTILLED_CHECKPOINT_FILE

    folder = tmp_path / "weights"
    shutil.copytree(tiny_weights, folder)
    distilled = _distilled_transformer(tiny_weights)
    write_checkpoint(distilled, folder / DISTILLED_CHECKPOINT_FILE, fp8=False)
    bundle = load_bundle_from_weights(folder, torch.float32, recipe="distilled")
    assert bundle.distilled_source == "checkpoint" and _same_weights(bundle.pipe.transformer, distilled)
    assert not bundle.distilled_connectors
    assert _same_weights(bundle.pipe.connectors, _folder_connectors(tiny_weights))
    assert describe_distilled_source(bundle, folder) == (
        "distilled: checkpoint ltx-2-19b-distilled.safetensors (transformer only: the file has no text connector "
        "tensors, so they come from connectors/)"
    )


def test_a_distilled_checkpoint_with_only_some_text_connector_tensors_is_refused(tiny_weights, tmp_path):
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from pipelines.loader import load_bundle_from_weights
    from pipelines.weights import DISTILLED_CHECKPOINT_FILE

    folder = tmp_path / "weights"
    shutil.copytree(tiny_weights, folder)
    file = folder / DISTILLED_CHECKPOINT_FILE
    write_checkpoint(
        _distilled_transformer(tiny_weights), file, fp8=False, connectors=_distilled_connectors(tiny_weights)
    )
    tensors = load_file(str(file))
    del tensors["text_embedding_projection.aggregate_embed.weight"]
    save_file(tensors, str(file))
    with pytest.raises(ValueError, match="text connector tensors do not fit"):
        load_bundle_from_weights(folder, torch.float32, recipe="distilled")


def test_the_distilled_checkpoint_makes_the_video_and_the_description_says_so(distilled_weights, picture, tmp_path):
    folder, _distilled, _connectors = distilled_weights
    generator = pipelines.load_generator("ltx-2-19b", weights=str(folder), recipe="distilled", **FAST)
    assert "distilled: checkpoint ltx-2-19b-distilled.safetensors (transformer and text connectors)" in (
        generator.description
    )
    info = generate(generator, picture, tmp_path / "distilled.mp4")
    assert (info["width"], info["height"], info["frame_count"]) == (300, 260, 10)
