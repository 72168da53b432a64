"""The LoRA files of a ``--loras`` folder, read without torch (the API process lists and validates them).

A LoRA is one ``.safetensors`` file; its name is the file name without the suffix. Only the file's
header (a JSON table of tensor names and shapes) is read here: its rank is the smallest dimension of its
``lora_A``/``lora_down`` matrices.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path

# Names a request can carry safely in JSON, logs and file paths.
LORA_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_HEADER_BYTES = 100 * 1024 * 1024
# LoRAs one request may apply (the API and the pipelines check it): each adds a side matmul per matrix it touches.
MAX_LORAS_PER_REQUEST = 4


class LoraFolderError(ValueError):
    """The --loras folder or one of its files cannot be used; the message says which and why."""


@dataclass(frozen=True)
class LoraFile:
    name: str
    path: Path
    size_bytes: int
    rank: int | None  # None when no lora_A/lora_down matrix was recognised
    tensors: int


def read_safetensors_header(path: Path) -> dict:
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) != 8:
            raise LoraFolderError(f"{path.name}: not a safetensors file (too short)")
        (length,) = struct.unpack("<Q", prefix)
        if length > MAX_HEADER_BYTES:
            raise LoraFolderError(f"{path.name}: not a safetensors file (header of {length} bytes)")
        try:
            header = json.loads(handle.read(length))
        except ValueError as error:
            raise LoraFolderError(f"{path.name}: not a safetensors file ({error})") from None
    if not isinstance(header, dict):
        raise LoraFolderError(f"{path.name}: not a safetensors file (header is not a table)")
    return header


def describe_lora(path: Path) -> LoraFile:
    header = read_safetensors_header(path)
    ranks = [
        min(entry["shape"])
        for key, entry in header.items()
        if key != "__metadata__" and isinstance(entry, dict) and (".lora_A." in key or ".lora_down." in key)
        and entry.get("shape")
    ]
    tensors = sum(1 for key in header if key != "__metadata__")
    return LoraFile(path.stem, path, path.stat().st_size, min(ranks) if ranks else None, tensors)


def list_loras(folder: str | Path) -> list[LoraFile]:
    """Every LoRA of ``folder``, sorted by name; "" lists none."""
    if not str(folder):
        return []
    root = Path(folder)
    if not root.is_dir():
        raise LoraFolderError(f"loras: {root} is not a folder")
    found = []
    for path in sorted(root.glob("*.safetensors")):
        if not LORA_NAME_PATTERN.match(path.stem):
            raise LoraFolderError(
                f"loras: {path.name}: a LoRA's name (its file name without .safetensors) must be letters, digits, "
                "'.', '_' or '-', at most 128 characters"
            )
        found.append(describe_lora(path))
    return found
