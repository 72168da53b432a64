"""Fetch exactly the LTX-2 19B files the server needs from the Hugging Face hub, or check a folder offline.

Usage:
    python scripts/download_weights.py [--dest weights/] [--revision REV] [--fp8]
    python scripts/download_weights.py --check [DIR]        # offline; exit 0 complete, 1 not

What it downloads from the hub repo Lightricks/LTX-2 (the diffusers-format layout described in
pipelines/weights.py and weights/README.md): model_index.json; everything under transformer/, vae/,
audio_vae/, connectors/, vocoder/, text_encoder/, tokenizer/, scheduler/ and latent_upsampler/; and the
stage-2 LoRA ltx-2-19b-distilled-lora-384.safetensors. Not the repo's single-file checkpoints
(ltx-2-19b-dev.safetensors and the like): the diffusers folders hold the same weights.
`--fp8` adds ltx-2-19b-dev-fp8.safetensors (~27 GB), Lightricks' fp8 single-file checkpoint, next to the
layout; it is the only fp8 form Lightricks publishes for LTX-2 19B (weights/README.md says what it is
good for: the bf16 folder is needed either way).

Progress shows as huggingface_hub's bars. Downloads are resumable: run the same command again after an
interruption and finished files are kept, partial ones continue (huggingface_hub keeps them under
DEST/.cache/). A token for gated or private
access is taken from HF_TOKEN (or `hf auth login`), as huggingface_hub does. Before downloading it writes
DEST/.ltx2-manifest.json with every file's name and size as the hub lists them; `--check` compares
against it, and checks every safetensors header, without any network.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.weights import (  # noqa: E402  (after the sys.path line so the script runs from anywhere)
    DISTILLED_LORA_FILE,
    FP8_CHECKPOINT_FILE,
    HUB_REPO,
    LATENT_UPSAMPLER_DIR,
    MANIFEST_FILE,
    MODEL_INDEX_FILE,
    REQUIRED_COMPONENTS,
    check_weights,
    pipeline_components,
)

DEFAULT_DEST = "weights"


def select_hub_files(repo_files: Iterable[str], *, components: Iterable[str] = (), fp8: bool) -> list[str]:
    """The files of the hub listing this server needs, sorted. Pure: unit-tested without a network.

    `components` are the subfolders the hub's model_index.json names (pipeline_components); the layout's
    required ones and latent_upsampler/ are always taken, so a component added upstream comes along too.
    """
    folders = {*components, *REQUIRED_COMPONENTS, LATENT_UPSAMPLER_DIR}
    top_level = {MODEL_INDEX_FILE, DISTILLED_LORA_FILE} | ({FP8_CHECKPOINT_FILE} if fp8 else set())
    return sorted(name for name in repo_files if _needed(name, folders, top_level))


def _needed(name: str, folders: set[str], top_level: set[str]) -> bool:
    folder, _, rest = name.partition("/")
    if not rest:
        return name in top_level
    # Dotfiles (.gitattributes) inside folders are hub bookkeeping, never model files.
    return folder in folders and not rest.rsplit("/", 1)[-1].startswith(".")


def layout_gaps(selected: Iterable[str], *, fp8: bool) -> list[str]:
    """What the layout needs that the selection lacks: a changed hub repo fails here, before 75 GB move."""
    selected = set(selected)
    gaps = [name for name in (MODEL_INDEX_FILE, DISTILLED_LORA_FILE) if name not in selected]
    if fp8 and FP8_CHECKPOINT_FILE not in selected:
        gaps.append(FP8_CHECKPOINT_FILE)
    folders = (*REQUIRED_COMPONENTS, LATENT_UPSAMPLER_DIR)
    gaps += [f"{folder}/" for folder in folders if not any(name.startswith(folder + "/") for name in selected)]
    return gaps


def manifest(repo: str, revision: str, sizes: Mapping[str, int | None], files: Iterable[str]) -> dict:
    # Sizes the hub does not report (None) are left out: --check then relies on the headers alone.
    return {
        "repo": repo,
        "revision": revision,
        "files": {name: sizes[name] for name in files if sizes.get(name) is not None},
    }


def human_size(size: int) -> str:
    return f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"


def run_check(folder: str) -> int:
    problems = check_weights(folder)
    if not problems:
        print(f"complete: {folder}")
        return 0
    print(f"{folder} is incomplete ({len(problems)} problem{'s' if len(problems) != 1 else ''}):")
    for problem in problems:
        print(f"  {problem}")
    return 1


def run_download(dest: str, *, revision: str | None, fp8: bool) -> int:
    # Imported here so --check (and importing this module) works where huggingface_hub is absent.
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download

    info = HfApi().model_info(HUB_REPO, revision=revision, files_metadata=True)
    sizes = {sibling.rfilename: sibling.size for sibling in info.siblings or []}
    destination = Path(dest)
    components: list[str] = []
    if MODEL_INDEX_FILE in sizes:
        # Pinned to the listed commit, like everything below, so listing and files cannot disagree.
        index_path = hf_hub_download(HUB_REPO, MODEL_INDEX_FILE, revision=info.sha, local_dir=destination)
        components = pipeline_components(json.loads(Path(index_path).read_text(encoding="utf-8")))
    files = select_hub_files(sizes, components=components, fp8=fp8)
    gaps = layout_gaps(files, fp8=fp8)
    if gaps:
        print(f"{HUB_REPO}@{info.sha} lacks what the layout needs: {', '.join(gaps)}", file=sys.stderr)
        return 2
    total = sum(sizes[name] or 0 for name in files)
    print(f"{HUB_REPO}@{info.sha}: {len(files)} files, {human_size(total)} -> {dest}")

    destination.mkdir(parents=True, exist_ok=True)
    # Written first, so a --check on an interrupted download names every file still missing.
    (destination / MANIFEST_FILE).write_text(json.dumps(manifest(HUB_REPO, info.sha, sizes, files), indent=1))
    # Pinned to the listed commit so the manifest and the files cannot come from different revisions.
    snapshot_download(HUB_REPO, revision=info.sha, local_dir=destination, allow_patterns=files)
    return run_check(dest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", default=DEFAULT_DEST, help=f"weights folder (default: {DEFAULT_DEST}/)")
    parser.add_argument("--revision", default=None, help="hub branch, tag or commit (default: main)")
    parser.add_argument(
        "--fp8", action="store_true", help=f"also fetch Lightricks' fp8 checkpoint {FP8_CHECKPOINT_FILE} (~27 GB)"
    )
    parser.add_argument(
        "--check",
        nargs="?",
        const="",
        metavar="DIR",
        help="verify DIR (default: --dest) offline: names, sizes, safetensors headers; exit 0 if complete, 1 if not",
    )
    args = parser.parse_args(argv)
    if args.check is not None:
        return run_check(args.check or args.dest)
    return run_download(args.dest, revision=args.revision, fp8=args.fp8)


if __name__ == "__main__":
    sys.exit(main())
