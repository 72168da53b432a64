"""The weights layout check (pipelines/weights.py) and scripts/download_weights.py, on real files in tmp_path.

No network: the hub listing is a fixture list, and every weights folder is written here with the real
safetensors writer.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from safetensors.numpy import save_file

from pipelines.weights import (
    DISTILLED_CHECKPOINT_FILE,
    DISTILLED_FP8_CHECKPOINT_FILE,
    DISTILLED_LORA_FILE,
    FP8_CHECKPOINT_FILE,
    LATENT_UPSAMPLER_DIR,
    MANIFEST_FILE,
    REQUIRED_COMPONENTS,
    WeightsIncomplete,
    check_weights,
    distilled_checkpoint,
    pipeline_components,
    require_complete_weights,
    safetensors_problem,
)
from tests.support.servers import REPO_ROOT

SCRIPT = Path(REPO_ROOT) / "scripts" / "download_weights.py"
TRANSFORMER_SHARDS = [f"diffusion_pytorch_model-0000{i}-of-00002.safetensors" for i in (1, 2)]
CLASSES = {
    "transformer": ["diffusers", "LTX2VideoTransformer3DModel"],
    "vae": ["diffusers", "AutoencoderKLLTX2Video"],
    "audio_vae": ["diffusers", "AutoencoderKLLTX2Audio"],
    "connectors": ["ltx2", "LTX2TextConnectors"],
    "vocoder": ["ltx2", "LTX2Vocoder"],
    "text_encoder": ["transformers", "Gemma3ForConditionalGeneration"],
    "tokenizer": ["transformers", "GemmaTokenizerFast"],
    "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
}


def _tensors(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"a.weight": rng.standard_normal((4, 8)).astype(np.float32), "a.bias": np.zeros(4, np.float16)}


def _write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))


def _write_safetensors(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(_tensors(seed), str(path))


def make_weights_folder(root: Path) -> Path:
    """A complete folder in the LTX-2 layout, small: real safetensors files, a sharded transformer."""
    _write_json(root / "model_index.json", {"_class_name": "LTX2ImageToVideoPipeline", **CLASSES})
    for seed, name in enumerate(["vae", "audio_vae", "connectors", "vocoder", LATENT_UPSAMPLER_DIR]):
        _write_json(root / name / "config.json", {"name": name})
        _write_safetensors(root / name / "diffusion_pytorch_model.safetensors", seed)
    _write_json(root / "transformer" / "config.json", {"num_layers": 2})
    weight_map = {}
    for seed, shard in enumerate(TRANSFORMER_SHARDS, start=10):
        _write_safetensors(root / "transformer" / shard, seed)
        weight_map |= {f"{shard}.{key}": shard for key in _tensors(seed)}
    _write_json(
        root / "transformer" / "diffusion_pytorch_model.safetensors.index.json",
        {"metadata": {"total_size": 0}, "weight_map": weight_map},
    )
    _write_json(root / "text_encoder" / "config.json", {"model_type": "gemma3"})
    _write_safetensors(root / "text_encoder" / "model.safetensors", 20)
    _write_json(root / "tokenizer" / "tokenizer_config.json", {})
    _write_json(root / "tokenizer" / "tokenizer.json", {"model": {}})
    _write_json(root / "scheduler" / "scheduler_config.json", {"shift_terminal": 0.1})
    _write_safetensors(root / DISTILLED_LORA_FILE, 30)
    return root


def _write_manifest(root: Path) -> None:
    files = {
        p.relative_to(root).as_posix(): p.stat().st_size
        for p in root.rglob("*")
        if p.is_file() and p.name != MANIFEST_FILE
    }
    _write_json(root / MANIFEST_FILE, {"repo": "Lightricks/LTX-2", "revision": "abc", "files": files})


def _problem_about(problems: list[str], file: str) -> str:
    matching = [p for p in problems if p.startswith(f"{file}:")]
    assert len(matching) == 1, f"expected one problem about {file}, got {problems}"
    return matching[0]


@pytest.fixture
def weights(tmp_path):
    return make_weights_folder(tmp_path / "weights")


# ---- check_weights --------------------------------------------------------------------------------------


def test_a_complete_folder_has_no_problems(weights):
    assert check_weights(weights) == []
    require_complete_weights(weights)  # does not raise


def test_a_complete_folder_with_a_matching_manifest_has_no_problems(weights):
    _write_manifest(weights)
    assert check_weights(weights) == []


def test_a_missing_config_is_named_with_the_download_command(weights):
    (weights / "vae" / "config.json").unlink()
    problems = check_weights(weights)
    problem = _problem_about(problems, "vae/config.json")
    assert "missing" in problem
    assert problems == [problem, f"fix: python scripts/download_weights.py --dest {weights}"]


def test_a_truncated_shard_is_named(weights):
    shard = weights / "transformer" / TRANSFORMER_SHARDS[1]
    data = shard.read_bytes()
    shard.write_bytes(data[:-7])
    problem = _problem_about(check_weights(weights), f"transformer/{TRANSFORMER_SHARDS[1]}")
    assert "truncated" in problem
    assert f"{len(data) - 7} bytes on disk, the header says {len(data)}" in problem


def test_a_file_cut_inside_its_header_is_named(weights):
    lora = weights / DISTILLED_LORA_FILE
    lora.write_bytes(lora.read_bytes()[:20])
    assert "truncated" in _problem_about(check_weights(weights), DISTILLED_LORA_FILE)


def test_a_shard_missing_from_an_index_is_named_with_its_index(weights):
    (weights / "transformer" / TRANSFORMER_SHARDS[0]).unlink()
    problem = _problem_about(check_weights(weights), f"transformer/{TRANSFORMER_SHARDS[0]}")
    assert "missing (a shard named in transformer/diffusion_pytorch_model.safetensors.index.json)" in problem


def test_the_latent_upsampler_and_the_lora_are_required(weights):
    (weights / LATENT_UPSAMPLER_DIR / "diffusion_pytorch_model.safetensors").unlink()
    (weights / DISTILLED_LORA_FILE).unlink()
    problems = check_weights(weights)
    assert "no weights in latent_upsampler/" in _problem_about(problems, "latent_upsampler/*.safetensors")
    assert "missing" in _problem_about(problems, DISTILLED_LORA_FILE)


def test_tokenizer_files_are_required(weights):
    (weights / "tokenizer" / "tokenizer.json").unlink()
    assert "missing" in _problem_about(check_weights(weights), "tokenizer/tokenizer.json or tokenizer.model")


def test_every_component_of_the_model_index_must_be_present(weights):
    index = json.loads((weights / "model_index.json").read_text())
    del index["connectors"]
    (weights / "model_index.json").write_text(json.dumps(index))
    assert "lists no 'connectors' component" in _problem_about(check_weights(weights), "model_index.json")
    (weights / "model_index.json").write_text("{not json")
    assert "not readable JSON" in _problem_about(check_weights(weights), "model_index.json")


def test_an_extra_component_of_the_model_index_needs_its_folder(weights):
    index = json.loads((weights / "model_index.json").read_text())
    index |= {"processor": ["transformers", "Gemma3Processor"], "prompt_enhancer": [None, None]}
    (weights / "model_index.json").write_text(json.dumps(index))
    assert _problem_about(check_weights(weights), "processor/").startswith("processor/: missing")
    _write_json(weights / "processor" / "processor_config.json", {})
    assert check_weights(weights) == []


def test_pipeline_components_skips_absent_optional_components():
    index = {"_class_name": "X", "_diffusers_version": "0.42.1", "vae": ["diffusers", "V"], "processor": [None, None]}
    assert pipeline_components(index) == ["vae"]


def test_a_component_folder_without_weights_is_named(weights):
    (weights / "vocoder" / "diffusion_pytorch_model.safetensors").unlink()
    assert "no weights in vocoder/" in _problem_about(check_weights(weights), "vocoder/*.safetensors")


def test_a_file_that_is_not_safetensors_is_named(weights):
    (weights / "text_encoder" / "model.safetensors").write_bytes(b"<html>rate limited</html>" * 4)
    assert "not safetensors" in _problem_about(check_weights(weights), "text_encoder/model.safetensors")


def test_manifest_sizes_and_names_are_compared(weights):
    _write_manifest(weights)
    manifest = json.loads((weights / MANIFEST_FILE).read_text())
    manifest["files"]["scheduler/scheduler_config.json"] += 1
    manifest["files"][FP8_CHECKPOINT_FILE] = 123
    (weights / MANIFEST_FILE).write_text(json.dumps(manifest))
    problems = check_weights(weights)
    assert "the hub published" in _problem_about(problems, "scheduler/scheduler_config.json")
    assert "missing" in _problem_about(problems, FP8_CHECKPOINT_FILE)


def test_partial_downloads_in_hidden_folders_are_ignored(weights):
    partial = weights / ".cache" / "huggingface" / "download" / "x.safetensors"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"\x00" * 3)
    assert check_weights(weights) == []


def test_an_empty_folder_names_everything_the_layout_needs(tmp_path):
    problems = check_weights(tmp_path)
    for file in ["model_index.json", *(f"{c}/" for c in REQUIRED_COMPONENTS if c not in ("tokenizer", "scheduler"))]:
        assert "missing" in _problem_about(problems, file)
    for file in ["tokenizer/tokenizer_config.json", "scheduler/scheduler_config.json", "latent_upsampler/"]:
        assert "missing" in _problem_about(problems, file)
    assert "missing" in _problem_about(problems, DISTILLED_LORA_FILE)


def test_an_absent_folder_is_one_problem(tmp_path):
    problems = check_weights(tmp_path / "nowhere")
    assert len(problems) == 2 and "no such folder" in problems[0] and problems[1].startswith("fix: ")


def test_weights_incomplete_carries_the_problems(weights):
    (weights / "scheduler" / "scheduler_config.json").unlink()
    with pytest.raises(WeightsIncomplete) as raised:
        require_complete_weights(weights)
    assert raised.value.problems == check_weights(weights)
    assert "scheduler/scheduler_config.json" in str(raised.value)
    assert str(WeightsIncomplete(["a: missing"])) == "LTX-2 weights are incomplete:\n- a: missing"


def test_safetensors_problem_accepts_metadata_and_empty_tensors(tmp_path):
    path = tmp_path / "x.safetensors"
    save_file({"empty": np.zeros((0, 3), np.float32), "b": np.ones(2, np.int8)}, str(path), metadata={"k": "v"})
    assert safetensors_problem(path) is None
    path.write_bytes(path.read_bytes() + b"\x00")
    assert "trailing bytes" in safetensors_problem(path)


def test_the_tiny_model_saved_in_the_real_layout_passes_the_check(tmp_path):
    # The layout check must agree with what diffusers, transformers and save_tiny_weights really write.
    from pipelines.tiny import save_tiny_weights

    save_tiny_weights(tmp_path / "tiny")
    assert check_weights(tmp_path / "tiny") == []
    (tmp_path / "tiny" / "tokenizer" / "tokenizer_config.json").unlink()
    assert _problem_about(check_weights(tmp_path / "tiny"), "tokenizer/tokenizer_config.json")


@pytest.mark.parametrize("name", [DISTILLED_CHECKPOINT_FILE, DISTILLED_FP8_CHECKPOINT_FILE])
def test_a_distilled_checkpoint_is_optional_and_checked_like_every_weight_file(weights, name):
    assert distilled_checkpoint(weights) is None and check_weights(weights) == []
    _write_safetensors(weights / name, 50)
    _write_manifest(weights)
    assert distilled_checkpoint(weights) == weights / name
    assert check_weights(weights) == []
    (weights / name).write_bytes((weights / name).read_bytes()[:-3])
    problems = check_weights(weights)
    assert "truncated" in _problem_about(problems, name)
    assert problems[-1] == f"fix: python scripts/download_weights.py --dest {weights}"


def test_the_bf16_distilled_checkpoint_is_preferred_to_the_fp8_one(weights):
    _write_safetensors(weights / DISTILLED_FP8_CHECKPOINT_FILE, 51)
    assert distilled_checkpoint(weights) == weights / DISTILLED_FP8_CHECKPOINT_FILE
    _write_safetensors(weights / DISTILLED_CHECKPOINT_FILE, 52)
    assert distilled_checkpoint(weights) == weights / DISTILLED_CHECKPOINT_FILE


# ---- scripts/download_weights.py ------------------------------------------------------------------------


def _run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )


def test_check_exits_0_on_a_complete_folder(weights):
    result = _run_script("--check", str(weights))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"complete: {weights}" in result.stdout


def test_check_accepts_the_layout_with_a_distilled_checkpoint_and_names_a_truncated_one(weights):
    distilled = weights / DISTILLED_CHECKPOINT_FILE
    _write_safetensors(distilled, 53)
    result = _run_script("--check", str(weights))
    assert result.returncode == 0, result.stdout + result.stderr
    distilled.write_bytes(distilled.read_bytes()[:-1])
    result = _run_script("--check", str(weights))
    assert result.returncode == 1
    assert f"{DISTILLED_CHECKPOINT_FILE}: truncated" in result.stdout


def test_check_exits_1_naming_the_broken_file(weights):
    shard = weights / "transformer" / TRANSFORMER_SHARDS[0]
    shard.write_bytes(shard.read_bytes()[:-1])
    result = _run_script("--check", "--dest", str(weights))  # --check without DIR checks --dest
    assert result.returncode == 1
    assert f"transformer/{TRANSFORMER_SHARDS[0]}: truncated" in result.stdout
    assert f"python scripts/download_weights.py --dest {weights}" in result.stdout


def _load_script():
    spec = importlib.util.spec_from_file_location("download_weights", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HUB_LISTING = [
    ".gitattributes",
    "README.md",
    "model_index.json",
    "ltx-2-19b-dev.safetensors",
    "ltx-2-19b-distilled.safetensors",
    FP8_CHECKPOINT_FILE,
    "ltx-2-19b-distilled-fp8.safetensors",
    "ltx-2-spatial-upscaler-x2-1.0.safetensors",
    DISTILLED_LORA_FILE,
    "transformer/config.json",
    "transformer/diffusion_pytorch_model-00001-of-00002.safetensors",
    "transformer/diffusion_pytorch_model-00002-of-00002.safetensors",
    "transformer/diffusion_pytorch_model.safetensors.index.json",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
    "audio_vae/config.json",
    "audio_vae/diffusion_pytorch_model.safetensors",
    "connectors/config.json",
    "connectors/diffusion_pytorch_model.safetensors",
    "vocoder/config.json",
    "vocoder/diffusion_pytorch_model.safetensors",
    "text_encoder/config.json",
    "text_encoder/model-00001-of-00005.safetensors",
    "text_encoder/model.safetensors.index.json",
    "text_encoder/.gitattributes",
    "tokenizer/tokenizer.json",
    "tokenizer/tokenizer_config.json",
    "scheduler/scheduler_config.json",
    "latent_upsampler/config.json",
    "latent_upsampler/diffusion_pytorch_model.safetensors",
    "media/trailer.gif",
]


def test_the_file_list_takes_the_diffusers_layout_and_no_single_file_checkpoints():
    script = _load_script()
    selected = script.select_hub_files(HUB_LISTING, fp8=False)
    assert "model_index.json" in selected and DISTILLED_LORA_FILE in selected
    assert "transformer/diffusion_pytorch_model.safetensors.index.json" in selected
    assert "latent_upsampler/diffusion_pytorch_model.safetensors" in selected
    assert {name.split("/")[0] for name in selected if "/" in name} == {*REQUIRED_COMPONENTS, LATENT_UPSAMPLER_DIR}
    for unwanted in [
        "ltx-2-19b-dev.safetensors",
        FP8_CHECKPOINT_FILE,
        "README.md",
        "media/trailer.gif",
        "text_encoder/.gitattributes",
        "ltx-2-spatial-upscaler-x2-1.0.safetensors",
    ]:
        assert unwanted not in selected
    assert script.layout_gaps(selected, fp8=False) == []


def test_fp8_takes_the_fp8_checkpoint_instead_of_the_bf16_transformer_weights():
    script = _load_script()
    plain = script.select_hub_files(HUB_LISTING, fp8=False)
    with_fp8 = script.select_hub_files(HUB_LISTING, fp8=True)
    assert sorted(set(with_fp8) - set(plain)) == [FP8_CHECKPOINT_FILE]
    skipped = sorted(set(plain) - set(with_fp8))
    assert skipped and all(name.startswith("transformer/") and ".safetensors" in name for name in skipped)
    assert "transformer/config.json" in with_fp8
    assert len(plain) == 22  # the listing minus 9 files: 6 top-level extras, a dotfile, media/, the fp8
    assert script.layout_gaps(with_fp8, fp8=True) == []
    assert script.layout_gaps(plain, fp8=True) == [FP8_CHECKPOINT_FILE]


@pytest.mark.parametrize(
    "fp8, wanted", [(False, DISTILLED_CHECKPOINT_FILE), (True, DISTILLED_FP8_CHECKPOINT_FILE)], ids=["bf16", "fp8"]
)
def test_distilled_adds_the_distilled_checkpoint_matching_fp8(fp8, wanted):
    script = _load_script()
    without = script.select_hub_files(HUB_LISTING, fp8=fp8)
    with_distilled = script.select_hub_files(HUB_LISTING, fp8=fp8, distilled=True)
    # Only the one checkpoint is added; everything else (the base transformer, the LoRA) is still taken.
    assert sorted(set(with_distilled) - set(without)) == [wanted] and set(without) <= set(with_distilled)
    assert script.layout_gaps(with_distilled, fp8=fp8, distilled=True) == []
    assert script.layout_gaps(without, fp8=fp8, distilled=True) == [wanted]
    listing = [name for name in HUB_LISTING if name != wanted]
    selected = script.select_hub_files(listing, fp8=fp8, distilled=True)
    assert script.layout_gaps(selected, fp8=fp8, distilled=True) == [wanted]


def test_components_named_by_the_hub_model_index_come_along():
    script = _load_script()
    listing = [*HUB_LISTING, "processor/processor_config.json", "unrelated/x.json"]
    selected = script.select_hub_files(listing, components=["processor", *REQUIRED_COMPONENTS], fp8=False)
    assert "processor/processor_config.json" in selected and "unrelated/x.json" not in selected


def test_a_hub_listing_without_a_component_is_a_gap():
    script = _load_script()
    listing = [name for name in HUB_LISTING if not name.startswith(("vocoder/", "latent_upsampler/"))]
    listing.remove(DISTILLED_LORA_FILE)
    gaps = script.layout_gaps(script.select_hub_files(listing, fp8=False), fp8=False)
    assert gaps == [DISTILLED_LORA_FILE, "vocoder/", "latent_upsampler/"]


def test_the_manifest_records_hub_sizes_of_the_selected_files():
    script = _load_script()
    sizes = {"model_index.json": 700, "vae/config.json": None, "README.md": 5}
    assert script.manifest("Lightricks/LTX-2", "sha", sizes, ["model_index.json", "vae/config.json"]) == {
        "repo": "Lightricks/LTX-2",
        "revision": "sha",
        "files": {"model_index.json": 700},
    }


def test_importing_the_weights_check_loads_no_torch_and_no_hub_client():
    code = (
        "import sys, runpy; import pipelines.weights; "
        f"runpy.run_path({str(SCRIPT)!r}, run_name='not_main'); "
        "heavy = sorted(m for m in ('torch', 'diffusers', 'transformers', 'huggingface_hub', 'numpy') "
        "if m in sys.modules); print(heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# ---- the download flow, against a hub stand-in (the real hub cannot be reached from here) ---------------


class _FakeHub:
    """Serves a local folder through the three huggingface_hub calls run_download makes."""

    def __init__(self, folder: Path, *, stop_after: int | None = None):
        self.folder = folder
        self.stop_after = stop_after  # files copied before a simulated interruption
        self.snapshot_calls: list[dict] = []

    def files(self) -> list[Path]:
        return sorted(p for p in self.folder.rglob("*") if p.is_file())

    def model_info(self, repo_id, *, revision=None, files_metadata=False, **_):
        assert files_metadata, "sizes are needed for the manifest"
        siblings = [
            SimpleNamespace(rfilename=p.relative_to(self.folder).as_posix(), size=p.stat().st_size)
            for p in self.files()
        ]
        return SimpleNamespace(sha="0123abcd", siblings=siblings)

    def _copy(self, name: str, local_dir) -> str:
        target = Path(local_dir) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.folder / name, target)
        return str(target)

    def hf_hub_download(self, repo_id, filename, *, revision=None, local_dir=None, **_):
        assert revision == "0123abcd"
        return self._copy(filename, local_dir)

    def snapshot_download(self, repo_id, *, revision=None, local_dir=None, allow_patterns=None, **_):
        self.snapshot_calls.append({"revision": revision, "allow_patterns": list(allow_patterns)})
        names = [p.relative_to(self.folder).as_posix() for p in self.files()]
        wanted = [n for n in names if any(fnmatch.fnmatch(n, pattern) for pattern in allow_patterns)]
        for name in wanted[: self.stop_after]:
            self._copy(name, local_dir)
        if self.stop_after is not None:
            raise ConnectionError("simulated interruption")
        return str(local_dir)


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    import huggingface_hub

    folder = make_weights_folder(tmp_path / "hub")
    _write_safetensors(folder / "ltx-2-19b-dev.safetensors", 40)  # a single-file checkpoint: never wanted
    (folder / "README.md").write_text("model card")
    hub = _FakeHub(folder)
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda: hub)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub.hf_hub_download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub.snapshot_download)
    return hub


def test_a_download_fetches_the_layout_pinned_to_one_revision_and_writes_the_manifest(fake_hub, tmp_path, capsys):
    dest = tmp_path / "dest"
    assert _load_script().main(["--dest", str(dest)]) == 0
    assert f"complete: {dest}" in capsys.readouterr().out
    assert not (dest / "ltx-2-19b-dev.safetensors").exists() and not (dest / "README.md").exists()
    assert fake_hub.snapshot_calls[0]["revision"] == "0123abcd"
    manifest = json.loads((dest / MANIFEST_FILE).read_text())
    assert manifest["revision"] == "0123abcd"
    assert manifest["files"][f"transformer/{TRANSFORMER_SHARDS[1]}"] == (
        (fake_hub.folder / "transformer" / TRANSFORMER_SHARDS[1]).stat().st_size
    )
    assert set(manifest["files"]) == set(fake_hub.snapshot_calls[0]["allow_patterns"])


def test_a_download_with_distilled_fetches_the_distilled_checkpoint(fake_hub, tmp_path, capsys):
    _write_safetensors(fake_hub.folder / DISTILLED_CHECKPOINT_FILE, 41)
    _write_safetensors(fake_hub.folder / DISTILLED_FP8_CHECKPOINT_FILE, 42)
    plain, distilled = tmp_path / "plain", tmp_path / "distilled"
    assert _load_script().main(["--dest", str(plain)]) == 0
    assert not (plain / DISTILLED_CHECKPOINT_FILE).exists()
    assert _load_script().main(["--dest", str(distilled), "--distilled"]) == 0
    assert f"complete: {distilled}" in capsys.readouterr().out
    assert (distilled / DISTILLED_CHECKPOINT_FILE).read_bytes() == (
        fake_hub.folder / DISTILLED_CHECKPOINT_FILE
    ).read_bytes()
    assert not (distilled / DISTILLED_FP8_CHECKPOINT_FILE).exists()
    assert DISTILLED_CHECKPOINT_FILE in json.loads((distilled / MANIFEST_FILE).read_text())["files"]


def test_after_an_interrupted_download_check_names_the_files_still_missing(fake_hub, tmp_path):
    fake_hub.stop_after = 5
    dest = tmp_path / "dest"
    with pytest.raises(ConnectionError):
        _load_script().main(["--dest", str(dest)])
    result = _run_script("--check", str(dest))
    assert result.returncode == 1
    manifest = json.loads((dest / MANIFEST_FILE).read_text())
    missing = [name for name in manifest["files"] if not (dest / name).exists()]
    assert missing and all(f"{name}: missing" in result.stdout for name in missing)
