"""The weights folder of a generation Lightricks publishes as single-file checkpoints (LTX-2.3), and its
offline completeness check.

Pure Python (stdlib only), like pipelines/weights.py: the API process can check a folder before any worker
loads torch. The layout is the files of the hub repository as published, side by side, plus the Gemma 3 text
encoder in a subfolder, which Lightricks' pipelines take from a separate download (``--gemma-root``):

    DIR/ltx-2.3-22b-dev.safetensors                 the dev checkpoint: transformer, text projections and
                                                    connectors, video VAE, audio VAE, vocoder; its metadata
                                                    holds the model config and model_version ("2.3...")
    DIR/ltx-2.3-22b-distilled-lora-384-1.1.safetensors   stage 2 of the two-stage recipe (the distilled LoRA)
    DIR/ltx-2.3-spatial-upscaler-x2-1.1.safetensors the 2x latent upsampler (its config in its metadata)
    DIR/ltx-2.3-22b-distilled-1.1.safetensors       optional (`download_weights.py --model ltx-2.3-22b
                                                    --distilled`): the distilled checkpoint, which
                                                    `--recipe distilled` then runs for both stages
    DIR/gemma/                                      Gemma 3 12B (config.json, tokenizer files, weights with
                                                    their shard index), as google/gemma-3-12b-it-qat-q4_0-
                                                    unquantized is published

Which recipe needs what: two-stage the dev checkpoint, the LoRA, the upsampler and Gemma; one-stage the dev
checkpoint and Gemma; distilled the upsampler, Gemma and either the distilled checkpoint or the dev checkpoint
with the LoRA. Where an earlier release of a file is there instead (``...-distilled-lora-384.safetensors``,
``...-spatial-upscaler-x2-1.0.safetensors``, ``...-distilled.safetensors``) it is used, the newest first.

Where the names come from (read 2026-11; re-check on a hub change): the Lightricks/LTX-2.3 repository's file
names as public download scripts and ComfyUI workflows fetch them (``ltx-2.3-22b-dev.safetensors``,
``ltx-2.3-22b-distilled-1.1.safetensors``, ``ltx-2.3-22b-distilled-lora-384-1.1.safetensors``,
``ltx-2.3-spatial-upscaler-x2-1.1.safetensors``); the Gemma repository is the one ltx-pipelines' README and
diffusers' conversion script (``--text_encoder_model_id``) name. The model_version metadata is what
ltx-pipelines' ``detect_params`` reads.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .generations import safetensors_metadata
from .weights import MANIFEST_FILE, WeightsIncomplete, safetensors_problem

TEXT_ENCODER_DIR = "gemma"
TEXT_ENCODER_REPO = "google/gemma-3-12b-it-qat-q4_0-unquantized"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")


@dataclass(frozen=True)
class SingleFileRelease:
    """One generation's published file names; where several are listed, the first present is used."""

    hub_repo: str
    model_version_prefix: str
    dev: tuple[str, ...]
    distilled: tuple[str, ...]
    distilled_lora: tuple[str, ...]
    latent_upsampler: tuple[str, ...]
    text_encoder_repo: str = TEXT_ENCODER_REPO

    def download_command(self, model: str, path: str | os.PathLike) -> str:
        return f"python scripts/download_weights.py --model {model} --dest {path}"


LTX_2_3 = SingleFileRelease(
    hub_repo="Lightricks/LTX-2.3",
    model_version_prefix="2.3",
    dev=("ltx-2.3-22b-dev.safetensors",),
    distilled=("ltx-2.3-22b-distilled-1.1.safetensors", "ltx-2.3-22b-distilled.safetensors"),
    distilled_lora=("ltx-2.3-22b-distilled-lora-384-1.1.safetensors", "ltx-2.3-22b-distilled-lora-384.safetensors"),
    latent_upsampler=("ltx-2.3-spatial-upscaler-x2-1.1.safetensors", "ltx-2.3-spatial-upscaler-x2-1.0.safetensors"),
)
RELEASES = {"ltx-2.3-22b": LTX_2_3}


@dataclass(frozen=True)
class SingleFileLayout:
    root: Path
    release: SingleFileRelease = LTX_2_3
    model: str = "ltx-2.3-22b"

    @classmethod
    def of(cls, root: str | os.PathLike, model: str = "ltx-2.3-22b") -> "SingleFileLayout":
        return cls(Path(root), RELEASES[model], model)

    @property
    def text_encoder_dir(self) -> Path:
        return self.root / TEXT_ENCODER_DIR

    def _first(self, names: tuple[str, ...]) -> Path | None:
        return next((self.root / name for name in names if (self.root / name).is_file()), None)

    def dev_checkpoint(self) -> Path | None:
        return self._first(self.release.dev)

    def distilled_checkpoint(self) -> Path | None:
        return self._first(self.release.distilled)

    def distilled_lora(self) -> Path | None:
        return self._first(self.release.distilled_lora)

    def latent_upsampler(self) -> Path | None:
        return self._first(self.release.latent_upsampler)

    def model_version(self, checkpoint: Path) -> str:
        return safetensors_metadata(checkpoint).get("model_version", "")

    def check(self, recipe: str = "two-stage") -> list[str]:
        """Every problem that would stop ``recipe`` loading from this folder, one per file, then one
        ``fix: ...`` line; empty when complete. Reads only headers."""
        if not self.root.is_dir():
            findings = [f"{self.root}: no such folder"]
        else:
            findings = self._required(recipe) + self._checkpoint_findings() + self._file_findings()
            findings += self._text_encoder_findings() + self._manifest_findings()
        unique = list(dict.fromkeys(findings))
        return [*unique, f"fix: {self.release.download_command(self.model, self.root)}"] if unique else []

    def require_complete(self, recipe: str = "two-stage") -> None:
        problems = self.check(recipe)
        if problems:
            raise WeightsIncomplete(problems, self.root)

    # ---- what each recipe needs --------------------------------------------------------------------------

    def _required(self, recipe: str) -> list[str]:
        release, missing = self.release, []
        needs = {"one-stage": ("dev",), "two-stage": ("dev", "distilled_lora", "latent_upsampler")}
        if recipe == "distilled":
            needs["distilled"] = ("latent_upsampler",)
            if self.distilled_checkpoint() is None:
                needs["distilled"] += ("dev", "distilled_lora")
        for part in needs.get(recipe, needs["two-stage"]):
            names: tuple[str, ...] = getattr(release, part)
            if self._first(names) is None:
                alternatives = f" (or {', '.join(names[1:])})" if len(names) > 1 else ""
                missing.append(f"{names[0]}: missing{alternatives}")
        return missing

    def _checkpoint_findings(self) -> list[str]:
        """A checkpoint must carry its config and this generation's model_version (another generation's file
        under this name would load wrongly or not at all)."""
        findings = []
        for checkpoint in (self.dev_checkpoint(), self.distilled_checkpoint()):
            if checkpoint is None or safetensors_problem(checkpoint):
                continue
            metadata = safetensors_metadata(checkpoint)
            version = metadata.get("model_version", "")
            if not version.startswith(self.release.model_version_prefix):
                findings.append(
                    f"{checkpoint.name}: model_version {version or '(none)'} is not "
                    f"{self.release.model_version_prefix}.x ({self.model})"
                )
            elif "config" not in metadata:
                findings.append(f"{checkpoint.name}: its metadata has no model config")
        return findings

    def _file_findings(self) -> list[str]:
        findings = []
        for file in sorted(self.root.glob("*.safetensors")):
            problem = safetensors_problem(file)
            if problem:
                findings.append(f"{file.name}: {problem}")
        return findings

    def _text_encoder_findings(self) -> list[str]:
        folder, name = self.text_encoder_dir, TEXT_ENCODER_DIR
        if not folder.is_dir():
            return [f"{name}/: missing (Gemma 3 12B, from {self.release.text_encoder_repo})"]
        findings = [f"{name}/{file}: missing" for file in ("config.json", "tokenizer_config.json")
                    if not (folder / file).is_file()]  # fmt: skip
        if not any((folder / file).is_file() for file in _TOKENIZER_FILES):
            findings.append(f"{name}/{' or '.join(_TOKENIZER_FILES)}: missing")
        weights = sorted(folder.glob("*.safetensors"))
        if not weights:
            findings.append(f"{name}/*.safetensors: missing (no weights in {name}/)")
        for index in sorted(folder.glob("*.safetensors.index.json")):
            findings += _shard_findings(self.root, index)
        for file in weights:
            problem = safetensors_problem(file)
            if problem:
                findings.append(f"{name}/{file.name}: {problem}")
        return findings

    def _manifest_findings(self) -> list[str]:
        path = self.root / MANIFEST_FILE
        if not path.is_file():
            return []
        try:
            expected = {str(k): int(v) for k, v in json.loads(path.read_text(encoding="utf-8"))["files"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            return [f"{MANIFEST_FILE}: not readable ({error.__class__.__name__}: {error})"]
        findings = []
        for name, size in sorted(expected.items()):
            file = self.root / name
            if not file.is_file():
                findings.append(f"{name}: missing")
            elif file.stat().st_size != size:
                findings.append(f"{name}: {file.stat().st_size} bytes on disk, the hub published {size}")
        return findings


def _shard_findings(root: Path, index_file: Path) -> list[str]:
    rel = index_file.relative_to(root).as_posix()
    try:
        shards = set(json.loads(index_file.read_text(encoding="utf-8"))["weight_map"].values())
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        return [f"{rel}: not a readable shard index ({error.__class__.__name__}: {error})"]
    return [
        f"{(index_file.parent / shard).relative_to(root).as_posix()}: missing (a shard named in {rel})"
        for shard in sorted(shards)
        if not (index_file.parent / shard).is_file()
    ]


def check_single_file_weights(
    path: str | os.PathLike, model: str = "ltx-2.3-22b", recipe: str = "two-stage"
) -> list[str]:
    """SingleFileLayout(path).check(recipe): the problems, one per file, then a ``fix:`` line."""
    return SingleFileLayout.of(path, model).check(recipe)


# ---- what to fetch from the hub (scripts/download_weights.py --model ltx-2.3-22b) --------------------------


def select_release_files(repo_files: list[str] | set[str], release: SingleFileRelease = LTX_2_3, *,
                         distilled: bool = False) -> list[str]:  # fmt: skip
    """The model repository's files to fetch: the newest published name of each part the layout needs."""
    available = set(repo_files)
    parts = [release.dev, release.distilled_lora, release.latent_upsampler]
    if distilled:
        parts.append(release.distilled)
    return sorted(next(name for name in names if name in available) for names in parts
                  if any(name in available for name in names))  # fmt: skip


def release_gaps(selected: list[str], release: SingleFileRelease = LTX_2_3, *, distilled: bool = False) -> list[str]:
    parts = [release.dev, release.distilled_lora, release.latent_upsampler]
    if distilled:
        parts.append(release.distilled)
    return [names[0] for names in parts if not any(name in selected for name in names)]


def select_text_encoder_files(repo_files: list[str] | set[str]) -> list[str]:
    """The Gemma repository's files the text encoder and tokenizer load from (no README, no images)."""
    wanted = (".json", ".model", ".safetensors", ".jinja")
    return sorted(name for name in repo_files if "/" not in name and name.endswith(wanted))


__all__ = [
    "LTX_2_3",
    "RELEASES",
    "SingleFileLayout",
    "SingleFileRelease",
    "TEXT_ENCODER_DIR",
    "TEXT_ENCODER_REPO",
    "check_single_file_weights",
    "release_gaps",
    "select_release_files",
    "select_text_encoder_files",
]
