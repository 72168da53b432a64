"""Fetch exactly the files of one LTX-2 generation the server needs from the Hugging Face hub, or check a folder.

Usage:
    python scripts/download_weights.py [--model ltx-2-19b] [--dest weights/] [--revision REV] [--fp8] [--distilled]
    python scripts/download_weights.py --model ltx-2.3-22b [--dest DIR] [--revision REV] [--distilled]
    python scripts/download_weights.py --model ltx-2.5 [--dest DIR] [--revision REV]
    python scripts/download_weights.py [--model M] --check [DIR]      # offline; exit 0 complete, 1 not

`--model ltx-2.3-22b` fetches LTX-2.3 as Lightricks publishes it, single-file checkpoints side by side
(pipelines/weights_single_file.py): from Lightricks/LTX-2.3 the dev checkpoint, the distilled LoRA and the
spatial upscaler (the newest release of each), with `--distilled` the distilled checkpoint too; and, into
DEST/gemma/, the Gemma 3 12B text encoder from google/gemma-3-12b-it-qat-q4_0-unquantized, which Lightricks'
pipelines take from a separate download (its licence must be accepted on the hub first; HF_TOKEN is used).
`--model ltx-2.5` fetches LTX-2.5's per-component folders from Lightricks/LTX-2.5-Diffusers
(pipelines/ltx25_layout.py: both indexes and every folder the server reads, the diffusion decoder included;
not the duration head, nor the Gemma 4 prompt enhancer, which the server never runs).
Everything below describes the default, `--model ltx-2-19b`.

What it downloads from the hub repo Lightricks/LTX-2 (the diffusers-format layout described in
pipelines/weights.py and weights/README.md): model_index.json; everything under transformer/, vae/,
audio_vae/, connectors/, vocoder/, text_encoder/, tokenizer/, scheduler/ and latent_upsampler/; and the
stage-2 LoRA ltx-2-19b-distilled-lora-384.safetensors. Not the repo's single-file checkpoints
(ltx-2-19b-dev.safetensors and the like): the diffusers folders hold the same weights.
`--fp8` fetches ltx-2-19b-dev-fp8.safetensors (~27 GB), Lightricks' fp8 single-file checkpoint, INSTEAD
of the bf16 transformer shards (~38 GB; transformer/config.json is still fetched): the server then builds
the transformer from it, applying its per-tensor scales, and keeps it in fp8 (half the GPU memory).
`--distilled` also fetches Lightricks' full distilled checkpoint, ltx-2-19b-distilled.safetensors (~43 GB),
or with `--fp8` ltx-2-19b-distilled-fp8.safetensors (~27 GB) instead: `--recipe distilled` then runs both
stages with its transformer and no LoRA, as Lightricks' DistilledPipeline does (without it, that recipe
uses the base transformer with the distilled LoRA). Everything else is fetched as without it: the other
recipes still need the base transformer and the LoRA.

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
    DISTILLED_CHECKPOINT_FILE,
    DISTILLED_FP8_CHECKPOINT_FILE,
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


def distilled_file(*, fp8: bool) -> str:
    """The distilled checkpoint `--distilled` fetches: the fp8 one with `--fp8` (the transformer is kept in
    fp8 then anyway, so the bf16 file's extra ~16 GB would buy nothing), else the bf16 one."""
    return DISTILLED_FP8_CHECKPOINT_FILE if fp8 else DISTILLED_CHECKPOINT_FILE


def _top_level_files(*, fp8: bool, distilled: bool) -> list[str]:
    files = [MODEL_INDEX_FILE, DISTILLED_LORA_FILE]
    if fp8:
        files.append(FP8_CHECKPOINT_FILE)
    if distilled:
        files.append(distilled_file(fp8=fp8))
    return files


def select_hub_files(
    repo_files: Iterable[str], *, components: Iterable[str] = (), fp8: bool, distilled: bool = False
) -> list[str]:
    """The files of the hub listing this server needs, sorted. Pure: unit-tested without a network.

    `components` are the subfolders the hub's model_index.json names (pipeline_components); the layout's
    required ones and latent_upsampler/ are always taken, so a component added upstream comes along too.
    """
    folders = {*components, *REQUIRED_COMPONENTS, LATENT_UPSAMPLER_DIR}
    top_level = set(_top_level_files(fp8=fp8, distilled=distilled))
    needed = (name for name in repo_files if _needed(name, folders, top_level))
    # With the fp8 checkpoint, the transformer's weights come from it: skip its bf16 shards.
    return sorted(name for name in needed if not (fp8 and _is_transformer_weight(name)))


def _is_transformer_weight(name: str) -> bool:
    return name.startswith("transformer/") and ".safetensors" in name


def _needed(name: str, folders: set[str], top_level: set[str]) -> bool:
    folder, _, rest = name.partition("/")
    if not rest:
        return name in top_level
    # Dotfiles (.gitattributes) inside folders are hub bookkeeping, never model files.
    return folder in folders and not rest.rsplit("/", 1)[-1].startswith(".")


def layout_gaps(selected: Iterable[str], *, fp8: bool, distilled: bool = False) -> list[str]:
    """What the layout needs that the selection lacks: a changed hub repo fails here, before 75 GB move."""
    selected = set(selected)
    gaps = [name for name in _top_level_files(fp8=fp8, distilled=distilled) if name not in selected]
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


def run_download(dest: str, *, revision: str | None, fp8: bool, distilled: bool = False) -> int:
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
    files = select_hub_files(sizes, components=components, fp8=fp8, distilled=distilled)
    gaps = layout_gaps(files, fp8=fp8, distilled=distilled)
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


# ---- single-file generations (LTX-2.3) ---------------------------------------------------------------------


def run_check_model(model: str, folder: str) -> int:
    from pipelines.generations import check_weights as check_generation

    problems = check_generation(model, folder)
    if not problems:
        print(f"complete: {folder}")
        return 0
    print(f"{folder} is incomplete ({len(problems)} problem{'s' if len(problems) != 1 else ''}):")
    for problem in problems:
        print(f"  {problem}")
    return 1


def run_download_single_file(model: str, dest: str, *, revision: str | None, distilled: bool) -> int:
    from huggingface_hub import HfApi, snapshot_download

    from pipelines.weights_single_file import (
        RELEASES,
        TEXT_ENCODER_DIR,
        release_gaps,
        select_release_files,
        select_text_encoder_files,
    )

    release = RELEASES[model]
    api = HfApi()
    info = api.model_info(release.hub_repo, revision=revision, files_metadata=True)
    sizes = {sibling.rfilename: sibling.size for sibling in info.siblings or []}
    files = select_release_files(sizes, release, distilled=distilled)
    gaps = release_gaps(files, release, distilled=distilled)
    gemma = api.model_info(release.text_encoder_repo, files_metadata=True)
    gemma_sizes = {sibling.rfilename: sibling.size for sibling in gemma.siblings or []}
    gemma_files = select_text_encoder_files(gemma_sizes)
    if gaps or not gemma_files:
        missing = gaps + ([] if gemma_files else [f"{release.text_encoder_repo} (no model files listed)"])
        print(f"{release.hub_repo}@{info.sha} lacks what the layout needs: {', '.join(missing)}", file=sys.stderr)
        return 2
    listed = {**{name: sizes[name] for name in files},
              **{f"{TEXT_ENCODER_DIR}/{name}": gemma_sizes[name] for name in gemma_files}}  # fmt: skip
    total = sum(size or 0 for size in listed.values())
    print(f"{release.hub_repo}@{info.sha} + {release.text_encoder_repo}@{gemma.sha}: {len(listed)} files, "
          f"{human_size(total)} -> {dest}")  # fmt: skip
    destination = Path(dest)
    destination.mkdir(parents=True, exist_ok=True)
    record = manifest(release.hub_repo, info.sha, listed, listed)
    record["text_encoder"] = {"repo": release.text_encoder_repo, "revision": gemma.sha}
    (destination / MANIFEST_FILE).write_text(json.dumps(record, indent=1))
    snapshot_download(release.hub_repo, revision=info.sha, local_dir=destination, allow_patterns=files)
    snapshot_download(
        release.text_encoder_repo, revision=gemma.sha, local_dir=destination / TEXT_ENCODER_DIR,
        allow_patterns=gemma_files,
    )  # fmt: skip
    return run_check_model(model, dest)


def run_ltx25(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """LTX-2.5's per-component layout: its own selection and download (pipelines/ltx25_layout.py)."""
    from pipelines.ltx25_layout import download

    if args.fp8 or args.distilled:
        parser.error("--fp8 and --distilled are not for ltx-2.5 (one stage, one transformer; --fp8 at serve time)")
    if args.check is not None:
        return run_check_model(args.model, args.check or args.dest)
    return download(args.dest, revision=args.revision)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        default="ltx-2-19b",
        choices=("ltx-2-19b", "ltx-2.3-22b", "ltx-2.5"),
        help="the generation to fetch or check (default: ltx-2-19b; see docs/generations.md)",
    )
    parser.add_argument("--dest", default=DEFAULT_DEST, help=f"weights folder (default: {DEFAULT_DEST}/)")
    parser.add_argument("--revision", default=None, help="hub branch, tag or commit (default: main)")
    parser.add_argument(
        "--fp8", action="store_true", help=f"also fetch Lightricks' fp8 checkpoint {FP8_CHECKPOINT_FILE} (~27 GB)"
    )
    parser.add_argument(
        "--distilled",
        action="store_true",
        help=f"also fetch Lightricks' distilled checkpoint {DISTILLED_CHECKPOINT_FILE} (~43 GB; with --fp8: "
        f"{DISTILLED_FP8_CHECKPOINT_FILE}, ~27 GB), used by --recipe distilled",
    )
    parser.add_argument(
        "--check",
        nargs="?",
        const="",
        metavar="DIR",
        help="verify DIR (default: --dest) offline: names, sizes, safetensors headers; exit 0 if complete, 1 if not",
    )
    args = parser.parse_args(argv)
    if args.model == "ltx-2.5":
        return run_ltx25(parser, args)
    if args.model != "ltx-2-19b":
        if args.fp8:
            parser.error(f"--fp8 is for ltx-2-19b; {args.model} is stored in fp8 with --fp8 at serve time")
        if args.check is not None:
            return run_check_model(args.model, args.check or args.dest)
        return run_download_single_file(args.model, args.dest, revision=args.revision, distilled=args.distilled)
    if args.check is not None:
        return run_check(args.check or args.dest)
    return run_download(args.dest, revision=args.revision, fp8=args.fp8, distilled=args.distilled)


if __name__ == "__main__":
    sys.exit(main())
