"""The on-disk layout of LTX-2.5 weights (one folder per component), how to recognise it, check it offline
and fetch it. Stdlib only (huggingface_hub imported when downloading): the API process may call any of it.

LTX-2.5 is published in diffusers' format as Lightricks/LTX-2.5-Diffusers, one folder per component:

    DIR/modular_model_index.json   diffusers' modular pipeline index: "_class_name": "LTX25ModularPipeline",
                                   "_blocks_class_name": "LTX25AutoBlocks", one [library, class, loading spec]
                                   entry per component
    DIR/model_index.json           the standard pipeline's index ("_class_name": "LTX2Pipeline")
    DIR/transformer/ connectors/ text_encoder/ vae/ audio_vae/ vocoder/ diffusion_decoder/ duration_head/
                                   each a config.json plus *.safetensors (sharded ones with their index)
    DIR/tokenizer/ scheduler/      configuration only

What the server reads: every folder above but duration_head/ (requests always carry num_frames, so the
duration head, which predicts a clip length from the prompt, is never asked). The prompt enhancer and its
processor (Gemma 4 E2B, which the modular index points at in google/gemma-4-E2B-it) are not fetched: the
server never rewrites prompts.

Where each fact comes from: the component names and classes are those diffusers 0.42.1's LTX-2.5 blocks
expect (modular_pipelines/ltx2/modular_blocks_ltx25.py, ``LTX25AutoBlocks.expected_components``) and what its
``save_pretrained`` writes (pipelines/tiny25.py writes the tiny model through it, and the tests load that
folder back with diffusers' own ``ModularPipeline.from_pretrained``); the repository name and the
modular index are those of the hub page huggingface.co/Lightricks/LTX-2.5-Diffusers and its pull requests
(#13-#15 add the prompt enhancer entries). The shard counts of the hub repository were not verifiable
offline, so nothing here hard-codes them.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from .weights import (
    _CONFIG_ONLY_COMPONENTS,
    MANIFEST_FILE,
    MODEL_INDEX_FILE,
    WeightsIncomplete,
    _component_findings,
    _file_findings,
    _manifest_findings,
    _model_folder_findings,
    _unique,
    pipeline_components,
)

HUB_REPO = "Lightricks/LTX-2.5-Diffusers"
MODULAR_INDEX_FILE = "modular_model_index.json"
MODULAR_PIPELINE_CLASS = "LTX25ModularPipeline"  # diffusers' MODULAR_PIPELINE_MAPPING["ltx2.5"]
MODULAR_BLOCKS_CLASS = "LTX25AutoBlocks"
DIFFUSION_DECODER_DIR = "diffusion_decoder"
DURATION_HEAD_DIR = "duration_head"
# Gemma 4 is LTX-2.5's text encoder; diffusers keys LTX-2.5's image CRF on the same class family
# (pipelines/ltx2/utils.py resolve_default_image_crf: model_type gemma4_unified / gemma4).
_GEMMA4_CLASS_PREFIX = "Gemma4"

REQUIRED_COMPONENTS = (
    "transformer",
    "connectors",
    "text_encoder",
    "tokenizer",
    "vae",
    "audio_vae",
    "vocoder",
    "scheduler",
    DIFFUSION_DECODER_DIR,
)
# Listed by the indexes but never read by the server (see the module docstring).
UNUSED_COMPONENTS = (DURATION_HEAD_DIR, "prompt_enhancer", "processor")
DOWNLOAD_FOLDERS = REQUIRED_COMPONENTS


def _read_json(file: Path) -> dict | None:
    try:
        value = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def is_ltx25_folder(path: str | os.PathLike) -> bool:
    """Whether a weights folder holds LTX-2.5: its modular index names LTX-2.5's pipeline or blocks, or (no
    modular index) its model_index.json lists a diffusion decoder or a Gemma 4 text encoder."""
    root = Path(path)
    modular = _read_json(root / MODULAR_INDEX_FILE)
    if modular is not None:
        return (
            modular.get("_class_name") == MODULAR_PIPELINE_CLASS
            or modular.get("_blocks_class_name") == MODULAR_BLOCKS_CLASS
        )
    index = _read_json(root / MODEL_INDEX_FILE)
    if index is None:
        return False
    text_encoder = index.get("text_encoder")
    gemma4 = (
        isinstance(text_encoder, list)
        and len(text_encoder) == 2
        and str(text_encoder[1]).startswith(_GEMMA4_CLASS_PREFIX)
    )
    return DIFFUSION_DECODER_DIR in pipeline_components(index) or gemma4


def download_command(path: str | os.PathLike) -> str:
    return f"python scripts/download_weights.py --model ltx-2.5 --dest {path}"


def check_ltx25_weights(path: str | os.PathLike) -> list[str]:
    """Every problem that would stop the LTX-2.5 loader, one per file, then one ``fix: ...`` line; empty when
    complete. Offline; reads only the safetensors headers (and the download manifest, when there is one)."""
    root = Path(path)
    if not root.is_dir():
        findings = [f"{root}: no such folder"]
    else:
        findings = _layout_findings(root) + _file_findings(root) + _manifest_findings(root)
    unique = _unique(findings)
    return [*unique, f"fix: {download_command(root)}"] if unique else []


def require_ltx25_weights(path: str | os.PathLike) -> None:
    problems = check_ltx25_weights(path)
    if problems:
        raise WeightsIncomplete(problems, path)


def _layout_findings(root: Path) -> list[str]:
    findings = []
    if not (root / MODULAR_INDEX_FILE).is_file() and not (root / MODEL_INDEX_FILE).is_file():
        findings.append(f"{MODEL_INDEX_FILE}: missing (and no {MODULAR_INDEX_FILE} either)")
    elif not (root / MODEL_INDEX_FILE).is_file():
        # The loader builds diffusers' standard image-to-video pipeline, which reads model_index.json.
        findings.append(f"{MODEL_INDEX_FILE}: missing")
    for name in REQUIRED_COMPONENTS:
        configured_only = name in _CONFIG_ONLY_COMPONENTS
        findings += _component_findings(root, name) if configured_only else _model_folder_findings(root, name)
    return findings


# ---- fetching it -------------------------------------------------------------------------------------------


def select_hub_files(repo_files: Iterable[str]) -> list[str]:
    """The files of the hub listing the server needs, sorted: both indexes and the required folders (no
    dotfiles). Pure: unit-tested without a network."""
    top_level = {MODEL_INDEX_FILE, MODULAR_INDEX_FILE}
    selected = []
    for name in repo_files:
        folder, _, rest = name.partition("/")
        if not rest:
            if name in top_level:
                selected.append(name)
        elif folder in DOWNLOAD_FOLDERS and not rest.rsplit("/", 1)[-1].startswith("."):
            selected.append(name)
    return sorted(selected)


def layout_gaps(selected: Iterable[str]) -> list[str]:
    """What the layout needs that a selection lacks: a changed hub repository fails before anything moves."""
    selected = set(selected)
    gaps = [] if MODEL_INDEX_FILE in selected else [MODEL_INDEX_FILE]
    return gaps + [f"{folder}/" for folder in DOWNLOAD_FOLDERS if not any(n.startswith(folder + "/") for n in selected)]


def download(dest: str | os.PathLike, *, revision: str | None = None) -> int:
    """Fetch LTX-2.5's per-component folders into ``dest`` (resumable), then check them; 0 when complete."""
    from huggingface_hub import HfApi, snapshot_download

    info = HfApi().model_info(HUB_REPO, revision=revision, files_metadata=True)
    sizes = {sibling.rfilename: sibling.size for sibling in info.siblings or []}
    files = select_hub_files(sizes)
    gaps = layout_gaps(files)
    if gaps:
        print(f"{HUB_REPO}@{info.sha} lacks what the layout needs: {', '.join(gaps)}", file=sys.stderr)
        return 2
    destination = Path(dest)
    destination.mkdir(parents=True, exist_ok=True)
    listed = {name: sizes[name] for name in files if sizes.get(name) is not None}
    total = sum(size or 0 for size in listed.values())
    print(f"{HUB_REPO}@{info.sha}: {len(files)} files, {total / 1e9:.1f} GB -> {destination}")
    # Written first, so a check of an interrupted download names every file still missing.
    manifest = {"repo": HUB_REPO, "revision": info.sha, "files": listed}
    (destination / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))
    snapshot_download(HUB_REPO, revision=info.sha, local_dir=destination, allow_patterns=files)
    problems = check_ltx25_weights(destination)
    for problem in problems:
        print(f"  {problem}")
    return 1 if problems else 0
