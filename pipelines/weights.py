"""The on-disk layout of LTX-2 19B weights, and an offline completeness check of a weights folder.

Pure Python (stdlib only): the API process runs `check_weights` at start-up to refuse to start on absent
or half-downloaded weights with a message that names the files, before any worker loads torch.

The layout is the diffusers-format hub repo `Lightricks/LTX-2` as it is published, plus two extras the
two-stage recipe needs, which that same repo carries:

    DIR/model_index.json                 pipeline index: which component lives in which subfolder
    DIR/transformer/ vae/ audio_vae/ connectors/ vocoder/ text_encoder/
                                         each a config.json plus weights: `*.safetensors`, sharded ones
                                         with a `*.safetensors.index.json` naming every shard
    DIR/tokenizer/                       tokenizer_config.json plus tokenizer.json (or tokenizer.model)
    DIR/scheduler/scheduler_config.json
    DIR/latent_upsampler/                the 2x spatial latent upsampler (config.json + weights)
    DIR/ltx-2-19b-distilled-lora-384.safetensors      the stage-2 distilled LoRA
    DIR/ltx-2-19b-dev-fp8.safetensors    optional (`download_weights.py --fp8`): Lightricks' fp8 checkpoint; when
                                         present, transformer/ needs only its config.json (the loader builds
                                         the transformer from this file, applying its per-tensor scales)
    DIR/ltx-2-19b-distilled.safetensors  optional (`download_weights.py --distilled`; with --fp8,
    or DIR/ltx-2-19b-distilled-fp8.safetensors  the fp8 one): Lightricks' full distilled checkpoint; when
                                         present, `--recipe distilled` runs both stages with its transformer
                                         and no LoRA (the other recipes never read it)

Where each fact comes from (read 2026-11; re-check on a diffusers or hub change):
- Component names and classes: `model_index.json` of Lightricks/LTX-2 (hub page
  huggingface.co/Lightricks/LTX-2/blob/refs%2Fpr%2F46/model_index.json): audio_vae, connectors,
  scheduler, text_encoder (transformers Gemma3ForConditionalGeneration), tokenizer (GemmaTokenizerFast),
  transformer, vae, vocoder. They are also the components diffusers 0.42.1's LTX2ImageToVideoPipeline
  saves (it adds optional processor, prompt_enhancer and duration_head, written as [null, null] when
  absent); the check follows whatever model_index.json names, so a component added upstream is checked.
- `latent_upsampler/` as a subfolder and the LoRA file name at the repo's top: diffusers'
  docs/source/en/api/pipelines/ltx2.md, which loads
  `LTX2LatentUpsamplerModel.from_pretrained("Lightricks/LTX-2", subfolder="latent_upsampler")` and
  `pipe.load_lora_weights("Lightricks/LTX-2", weight_name="ltx-2-19b-distilled-lora-384.safetensors")`.
  ComfyUI's LTX-2 workflow templates and several public download scripts fetch the same file from
  https://huggingface.co/Lightricks/LTX-2/resolve/main/ltx-2-19b-distilled-lora-384.safetensors (~7.2 GB).
- fp8: Lightricks publishes fp8 for LTX-2 19B as single-file checkpoints at the repo's top, in the
  original (non-diffusers) key format with transformer and VAEs bundled: `ltx-2-19b-dev-fp8.safetensors`
  (~27 GB; linked from ComfyUI's LTX-2 templates and public download scripts) and
  `ltx-2-19b-distilled-fp8.safetensors` (listed by the ComfyUI-LTXVideo docs).
- The distilled checkpoints `ltx-2-19b-distilled.safetensors` / `-fp8`: the same single-file format, next
  to the dev ones at the repo's top; Lightricks' reference DistilledPipeline (ltx-pipelines 1.0.0,
  ltx_pipelines/distilled.py) runs both of its stages with this file's transformer and no LoRA. No source found shows an
  fp8 diffusers-format transformer folder. Lightricks' fp8 checkpoints store float8_e4m3fn weights with
  per-tensor `weight_scale`/`input_scale` tensors (Lightricks/LTX-2 PR #172, shown on the LTX-2.3 file;
  not verified on the 2.0 file here), which diffusers 0.42.1's single-file converter
  (loaders/single_file_utils.py, convert_ltx2_transformer_to_diffusers) only renames, never applies.
- Sharding: diffusers and transformers write `diffusion_pytorch_model-0000i-of-0000n.safetensors` /
  `model-0000i-of-0000n.safetensors` with a `*.safetensors.index.json` whose "weight_map" names every
  shard. The exact shard counts of the hub repo were not verifiable offline, so nothing here hard-codes
  them: the check follows whatever index files are present.
- safetensors format: 8-byte little-endian header length N, N bytes of JSON mapping tensor names to
  {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the byte after the header), an
  optional "__metadata__" entry; the data buffer ends at the largest `end` (github huggingface/safetensors
  README, "Format").
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

HUB_REPO = "Lightricks/LTX-2"
MODEL_INDEX_FILE = "model_index.json"
DISTILLED_LORA_FILE = "ltx-2-19b-distilled-lora-384.safetensors"
LATENT_UPSAMPLER_DIR = "latent_upsampler"
FP8_CHECKPOINT_FILE = "ltx-2-19b-dev-fp8.safetensors"
# Lightricks' full distilled checkpoints (optional, `download_weights.py --distilled`), bf16 and fp8.
DISTILLED_CHECKPOINT_FILE = "ltx-2-19b-distilled.safetensors"
DISTILLED_FP8_CHECKPOINT_FILE = "ltx-2-19b-distilled-fp8.safetensors"
# The loader's order of preference when both are there: bf16 first, as for the dev transformer.
DISTILLED_CHECKPOINT_FILES = (DISTILLED_CHECKPOINT_FILE, DISTILLED_FP8_CHECKPOINT_FILE)
# Written by scripts/download_weights.py: {"repo", "revision", "files": {relative path: size in bytes}}.
MANIFEST_FILE = ".ltx2-manifest.json"

REQUIRED_COMPONENTS = (
    "transformer",
    "vae",
    "audio_vae",
    "connectors",
    "vocoder",
    "text_encoder",
    "tokenizer",
    "scheduler",
)
_WEIGHTED_COMPONENTS = ("transformer", "vae", "audio_vae", "connectors", "vocoder", "text_encoder")
# Components whose folder holds only configuration, no weights.
_CONFIG_ONLY_COMPONENTS = {"tokenizer": "tokenizer_config.json", "scheduler": "scheduler_config.json"}
_TOKENIZER_VOCAB_FILES = ("tokenizer.json", "tokenizer.model")

# safetensors itself refuses headers over 100 MB; a bigger length is a corrupt or foreign file.
_MAX_HEADER_BYTES = 100 * 1024 * 1024


class WeightsIncomplete(Exception):
    """A weights folder is missing files or holds broken ones; `problems` lists each, by file."""

    def __init__(self, problems: list[str], path: str | os.PathLike | None = None):
        self.problems = list(problems)
        self.path = None if path is None else str(path)
        where = f" in {self.path}" if self.path else ""
        super().__init__(f"LTX-2 weights{where} are incomplete:\n" + "\n".join(f"- {p}" for p in self.problems))


def download_command(path: str | os.PathLike) -> str:
    return f"python scripts/download_weights.py --dest {path}"


def check_weights(path: str | os.PathLike) -> list[str]:
    """Every problem that would stop the LTX-2 loader, one message per file, then one ``fix: ...`` line
    with the download command; empty when complete.

    Works offline on any folder in this layout, the tiny model's included. Of the weight files it reads
    only the headers, so its cost does not grow with the ~75 GB of tensor data.
    """
    root = Path(path)
    if not root.is_dir():
        findings = [f"{root}: no such folder"]
    else:
        findings = _layout_findings(root) + _file_findings(root) + _manifest_findings(root)
    unique = _unique(findings)
    return [*unique, f"fix: {download_command(root)}"] if unique else []


def require_complete_weights(path: str | os.PathLike) -> None:
    """Raise WeightsIncomplete naming every missing or broken file."""
    problems = check_weights(path)
    if problems:
        raise WeightsIncomplete(problems, path)


# ---- the layout: which files must exist ---------------------------------------------------------------


def _layout_findings(root: Path) -> list[str]:
    findings: list[str] = []
    components, index_problem = _read_model_index(root)
    if index_problem:
        # Without the index, still name what the layout needs, so an empty folder reads as a full list.
        findings.append(index_problem)
        components = set(REQUIRED_COMPONENTS)
    for name in REQUIRED_COMPONENTS:
        if name not in components:
            findings.append(f"{MODEL_INDEX_FILE}: lists no '{name}' component")
    for name in sorted(components):
        findings += _component_findings(root, name)
    findings += _model_folder_findings(root, LATENT_UPSAMPLER_DIR)
    lora = root / DISTILLED_LORA_FILE
    if not lora.is_file():
        findings.append(f"{DISTILLED_LORA_FILE}: missing")
    return findings


def _read_model_index(root: Path) -> tuple[set[str], str | None]:
    index_path = root / MODEL_INDEX_FILE
    if not index_path.is_file():
        return set(), f"{MODEL_INDEX_FILE}: missing"
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return set(), f"{MODEL_INDEX_FILE}: not readable JSON ({error})"
    if not isinstance(index, dict):
        return set(), f"{MODEL_INDEX_FILE}: not a JSON object"
    return set(pipeline_components(index)), None


def pipeline_components(model_index: dict) -> list[str]:
    """The subfolders a diffusers model_index.json names, sorted.

    diffusers writes each component as [library, class]; [null, null] marks an optional component this
    pipeline does not have (diffusers 0.42.1 writes processor, prompt_enhancer and duration_head so).
    """
    return sorted(
        key
        for key, value in model_index.items()
        if not key.startswith("_") and isinstance(value, list) and len(value) == 2 and value[0] and value[1]
    )


def uses_fp8_checkpoint(root: str | os.PathLike) -> bool:
    """The transformer comes from Lightricks' fp8 single-file checkpoint: it is there, and transformer/
    holds no weights of its own (a bf16 transformer, when present, wins)."""
    root = Path(root)
    folder = root / "transformer"
    has_own = folder.is_dir() and (_weight_files(folder) or _index_files(folder))
    return (root / FP8_CHECKPOINT_FILE).is_file() and not has_own


def distilled_checkpoint(root: str | os.PathLike) -> Path | None:
    """The distilled checkpoint `--recipe distilled` would use (bf16 before fp8), or None when neither is
    there. Optional: the layout check does not require it, but checks it like every other weight file."""
    for name in DISTILLED_CHECKPOINT_FILES:
        if (Path(root) / name).is_file():
            return Path(root) / name
    return None


def _component_findings(root: Path, name: str) -> list[str]:
    if name == "transformer" and uses_fp8_checkpoint(root):
        return _require_file(root, root / name / "config.json")
    if name in _WEIGHTED_COMPONENTS:
        return _model_folder_findings(root, name)
    if name in _CONFIG_ONLY_COMPONENTS:
        folder = root / name
        findings = _require_file(root, folder / _CONFIG_ONLY_COMPONENTS[name])
        if name == "tokenizer" and folder.is_dir() and not any((folder / f).is_file() for f in _TOKENIZER_VOCAB_FILES):
            findings.append(f"{name}/{' or '.join(_TOKENIZER_VOCAB_FILES)}: missing")
        return findings
    # Any other component (a processor, say): its files are not known here, so only require the folder;
    # its weights, if any, still get their headers and shard indexes checked.
    folder = root / name
    if not folder.is_dir() or not any(folder.iterdir()):
        return [f"{name}/: missing"]
    return [finding for index_file in _index_files(folder) for finding in _index_findings(root, index_file)]


def _model_folder_findings(root: Path, name: str) -> list[str]:
    folder = root / name
    if not folder.is_dir():
        return [f"{name}/: missing"]
    findings = _require_file(root, folder / "config.json")
    if not _weight_files(folder) and not _index_files(folder):
        findings.append(f"{name}/*.safetensors: missing (no weights in {name}/)")
    for index_file in _index_files(folder):
        findings += _index_findings(root, index_file)
    return findings


def _require_file(root: Path, file: Path) -> list[str]:
    return [] if file.is_file() else [f"{_relative(root, file)}: missing"]


def _weight_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors"))


def _index_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors.index.json"))


def _index_findings(root: Path, index_file: Path) -> list[str]:
    rel = _relative(root, index_file)
    try:
        index = json.loads(index_file.read_text(encoding="utf-8"))
        shards = set(index["weight_map"].values())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
        return [f"{rel}: not a readable shard index ({error.__class__.__name__}: {error})"]
    return [
        f"{_relative(root, index_file.parent / shard)}: missing (a shard named in {rel})"
        for shard in sorted(shards)
        if not (index_file.parent / shard).is_file()
    ]


# ---- the files: is every weight file whole? -----------------------------------------------------------


def _file_findings(root: Path) -> list[str]:
    findings = []
    for file in _all_weight_files(root):
        problem = safetensors_problem(file)
        if problem:
            findings.append(f"{_relative(root, file)}: {problem}")
    return findings


def _all_weight_files(root: Path) -> list[Path]:
    # Hidden folders are skipped: huggingface_hub keeps partial downloads under DIR/.cache/.
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        found += [Path(folder) / f for f in sorted(files) if f.endswith(".safetensors")]
    return found


def safetensors_problem(file: str | os.PathLike) -> str | None:
    """Why this file is not a whole safetensors file (truncated, empty, not safetensors), or None."""
    try:
        size = os.path.getsize(file)
        with open(file, "rb") as stream:
            prefix = stream.read(8)
            if len(prefix) < 8:
                return f"truncated or not safetensors ({size} bytes, shorter than the 8-byte header length)"
            (header_length,) = struct.unpack("<Q", prefix)
            if header_length > _MAX_HEADER_BYTES or 8 + header_length > size:
                return f"truncated or not safetensors (header length {header_length} does not fit in {size} bytes)"
            header = json.loads(stream.read(header_length).decode("utf-8"))
    except OSError as error:
        return f"unreadable ({error})"
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "not safetensors (the header is not JSON)"
    data_end = _data_end(header)
    if data_end is None:
        return "not safetensors (the header has no valid tensor table)"
    expected = 8 + header_length + data_end
    if size != expected:
        kind = "truncated" if size < expected else "has trailing bytes"
        return f"{kind}: {size} bytes on disk, the header says {expected}"
    return None


def _data_end(header: object) -> int | None:
    if not isinstance(header, dict):
        return None
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            return None
        end = max(end, offsets[1])
    return end


# ---- the manifest: sizes as the hub published them -----------------------------------------------------


def _manifest_findings(root: Path) -> list[str]:
    manifest_path = root / MANIFEST_FILE
    if not manifest_path.is_file():
        return []
    try:
        expected = json.loads(manifest_path.read_text(encoding="utf-8"))["files"]
        expected = {str(name): int(size) for name, size in expected.items()}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as e:
        return [f"{MANIFEST_FILE}: not readable ({e.__class__.__name__}: {e})"]
    findings = []
    for name, size in sorted(expected.items()):
        file = root / name
        if not file.is_file():
            findings.append(f"{name}: missing")
        elif file.stat().st_size != size:
            findings.append(f"{name}: {file.stat().st_size} bytes on disk, the hub published {size}")
    return findings


# ---- helpers ---------------------------------------------------------------------------------------------


def _relative(root: Path, file: Path) -> str:
    return file.relative_to(root).as_posix()


def _unique(findings: list[str]) -> list[str]:
    """One finding per file (the first: the layout's, before the header's, before the manifest's)."""
    kept: dict[str, str] = {}
    for finding in findings:
        file = finding.split(": ", 1)[0]
        key = finding if file == MODEL_INDEX_FILE else file
        kept.setdefault(key, finding)
    return list(kept.values())
