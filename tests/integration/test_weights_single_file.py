"""The LTX-2.3 single-file layout's check (pipelines/weights_single_file.py) and ``download_weights.py --model
ltx-2.3-22b`` against a hub stand-in serving two repositories (the model's and Gemma's). No network, no torch:
files are written with safetensors' numpy writer. Loading such a folder is tests/parity/test_ltx23_weights.py.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from safetensors.numpy import save_file

from pipelines.generations import check_weights, detect_generation
from pipelines.weights import MANIFEST_FILE
from pipelines.weights_single_file import (
    LTX_2_3,
    TEXT_ENCODER_REPO,
    release_gaps,
    select_release_files,
    select_text_encoder_files,
)
from tests.support.servers import REPO_ROOT

METADATA = {"model_version": "2.3.0", "config": json.dumps({"transformer": {}})}


def _safetensors(path: Path, metadata: dict[str, str] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"w": np.zeros((2, 2), np.float32)}, str(path), metadata=metadata)


def _hub(root: Path) -> dict[str, Path]:
    model, gemma = root / "Lightricks/LTX-2.3", root / TEXT_ENCODER_REPO
    for name in ("ltx-2.3-22b-dev.safetensors", "ltx-2.3-22b-distilled-1.1.safetensors"):
        _safetensors(model / name, METADATA)
    for name in ("ltx-2.3-22b-distilled-lora-384.safetensors", "ltx-2.3-22b-distilled-lora-384-1.1.safetensors",
                 "ltx-2.3-spatial-upscaler-x2-1.0.safetensors", "ltx-2.3-spatial-upscaler-x2-1.1.safetensors",
                 "ltx-2.3-22b-dev-fp8.safetensors"):  # fmt: skip
        _safetensors(model / name)
    (model / "README.md").write_text("card")
    _safetensors(gemma / "model-00001-of-00001.safetensors")
    for name in ("config.json", "tokenizer_config.json", "tokenizer.json"):
        (gemma / name).write_text("{}")
    (gemma / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"w": "model-00001-of-00001.safetensors"}})
    )
    (gemma / "README.md").write_text("card")
    return {"Lightricks/LTX-2.3": model, TEXT_ENCODER_REPO: gemma}


class _FakeHub:
    def __init__(self, repos: dict[str, Path]):
        self.repos = repos

    def model_info(self, repo_id, *, revision=None, files_metadata=False, **_):
        folder = self.repos[repo_id]
        siblings = [SimpleNamespace(rfilename=p.relative_to(folder).as_posix(), size=p.stat().st_size)
                    for p in sorted(folder.rglob("*")) if p.is_file()]  # fmt: skip
        return SimpleNamespace(sha=f"sha-{repo_id.split('/')[0]}", siblings=siblings)

    def snapshot_download(self, repo_id, *, revision=None, local_dir=None, allow_patterns=None, **_):
        assert revision == f"sha-{repo_id.split('/')[0]}"
        for name in allow_patterns:
            target = Path(local_dir) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.repos[repo_id] / name, target)
        return str(local_dir)


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    import huggingface_hub

    hub = _FakeHub(_hub(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda: hub)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub.snapshot_download)
    return hub


def _script():
    path = Path(REPO_ROOT) / "scripts" / "download_weights.py"
    spec = importlib.util.spec_from_file_location("download_weights", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_newest_release_of_each_file_is_selected():
    listing = ["ltx-2.3-22b-dev.safetensors", "ltx-2.3-22b-distilled-lora-384.safetensors",
               "ltx-2.3-22b-distilled-lora-384-1.1.safetensors", "ltx-2.3-spatial-upscaler-x2-1.0.safetensors",
               "ltx-2.3-22b-distilled-1.1.safetensors", "README.md"]  # fmt: skip
    assert select_release_files(listing) == [
        "ltx-2.3-22b-dev.safetensors", "ltx-2.3-22b-distilled-lora-384-1.1.safetensors",
        "ltx-2.3-spatial-upscaler-x2-1.0.safetensors",
    ]  # fmt: skip
    assert "ltx-2.3-22b-distilled-1.1.safetensors" in select_release_files(listing, distilled=True)
    assert release_gaps(select_release_files(listing[:1]), LTX_2_3) == [
        LTX_2_3.distilled_lora[0], LTX_2_3.latent_upsampler[0]
    ]
    assert select_text_encoder_files(["config.json", "model-1.safetensors", "README.md", "a/b.json"]) == [
        "config.json", "model-1.safetensors",
    ]  # fmt: skip


def test_a_download_fetches_the_layout_and_gemma_and_checks_complete(fake_hub, tmp_path, capsys):
    dest = tmp_path / "dest"
    assert _script().main(["--model", "ltx-2.3-22b", "--dest", str(dest), "--distilled"]) == 0
    assert f"complete: {dest}" in capsys.readouterr().out
    names = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert names == sorted([
        MANIFEST_FILE, "ltx-2.3-22b-dev.safetensors", "ltx-2.3-22b-distilled-1.1.safetensors",
        "ltx-2.3-22b-distilled-lora-384-1.1.safetensors", "ltx-2.3-spatial-upscaler-x2-1.1.safetensors",
        "gemma/config.json", "gemma/model-00001-of-00001.safetensors", "gemma/model.safetensors.index.json",
        "gemma/tokenizer.json", "gemma/tokenizer_config.json",
    ])  # fmt: skip
    manifest = json.loads((dest / MANIFEST_FILE).read_text())
    assert manifest["text_encoder"] == {"repo": TEXT_ENCODER_REPO, "revision": "sha-google"}
    assert detect_generation(dest) == "ltx-2.3-22b"


def test_check_names_what_is_missing_truncated_or_of_another_size(fake_hub, tmp_path, capsys):
    dest = tmp_path / "dest"
    assert _script().main(["--model", "ltx-2.3-22b", "--dest", str(dest)]) == 0
    (dest / "gemma" / "model-00001-of-00001.safetensors").unlink()
    upscaler = dest / "ltx-2.3-spatial-upscaler-x2-1.1.safetensors"
    upscaler.write_bytes(upscaler.read_bytes()[:-3])
    problems = check_weights("ltx-2.3-22b", dest)
    shard = "gemma/model-00001-of-00001.safetensors"
    assert f"{shard}: missing (a shard named in gemma/model.safetensors.index.json)" in problems
    assert any(p.startswith(f"{upscaler.name}: truncated") for p in problems)
    assert problems[-1].startswith("fix: python scripts/download_weights.py --model ltx-2.3-22b")
    capsys.readouterr()
    assert _script().main(["--model", "ltx-2.3-22b", "--check", str(dest)]) == 1
    assert "is incomplete" in capsys.readouterr().out


def test_an_empty_folder_names_the_whole_layout(tmp_path):
    problems = check_weights("ltx-2.3-22b", tmp_path)
    for name in (LTX_2_3.dev[0], LTX_2_3.distilled_lora[0], LTX_2_3.latent_upsampler[0]):
        assert any(p.startswith(f"{name}: missing") for p in problems), name
    assert any(p.startswith("gemma/: missing (Gemma 3 12B") for p in problems)
    assert check_weights("tiny-2.3", tmp_path) == []
