"""A job's input images as one file: the image itself for plain image-to-video, else a bundle.

Every job has exactly one stored input (the stores and storages keep one file per job), so a job with
keyframes, or a text-to-video job with no image at all, stores a small uncompressed tar of its images
instead: ``image`` (absent for text-to-video) and ``keyframe-0``, ``keyframe-1``, ... in the order of
``JobSpec.keyframes``. Which of the two a file is follows from the spec (``JobSpec.has_input_bundle``),
never from sniffing the bytes. Torch-free: the API process packs, the worker child unpacks.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .interface import InvalidInputError, JobSpec

IMAGE_MEMBER = "image"


def keyframe_member(index: int) -> str:
    return f"keyframe-{index}"


@dataclass(frozen=True)
class JobInputs:
    """The local image files a generator reads for one job."""

    image: Path | None  # None: text-to-video
    keyframes: tuple[Path, ...] = ()


def pack_inputs(image: bytes | None, keyframes: Sequence[bytes]) -> bytes:
    """The bundle of a job's images (``image`` None for text-to-video)."""
    members = ([(IMAGE_MEMBER, image)] if image is not None else []) + [
        (keyframe_member(index), raw) for index, raw in enumerate(keyframes)
    ]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as bundle:
        for name, raw in members:
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            bundle.addfile(info, io.BytesIO(raw))
    return buffer.getvalue()


def unpack_inputs(spec: JobSpec, stored: Path, folder: Path) -> JobInputs:
    """The job's image files: ``stored`` itself, or its bundle's members written into ``folder``."""
    if not spec.has_input_bundle:
        return JobInputs(image=stored)
    folder.mkdir(parents=True, exist_ok=True)
    wanted = [keyframe_member(index) for index in range(len(spec.keyframes))]
    found: dict[str, Path] = {}
    try:
        with tarfile.open(stored, mode="r:") as bundle:
            for member in bundle.getmembers():
                if member.name not in (IMAGE_MEMBER, *wanted) or not member.isfile():
                    continue
                source = bundle.extractfile(member)
                if source is None:
                    continue
                target = folder / member.name
                target.write_bytes(source.read())
                found[member.name] = target
    except tarfile.TarError as error:
        raise InvalidInputError(f"the job's input bundle cannot be read ({error})") from None
    missing = [name for name in wanted if name not in found]
    if missing:
        raise InvalidInputError(f"the job's input bundle lacks {', '.join(missing)}")
    return JobInputs(image=found.get(IMAGE_MEMBER), keyframes=tuple(found[name] for name in wanted))
