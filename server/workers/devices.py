"""Which devices the workers run on: ``--gpus`` parsed into one ``WorkerDevice`` per worker.

Runs in the API process, which never imports torch: GPUs are counted with ``nvidia-smi -L`` (or the
driver's /proc entries), the way an operator would count them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

GPUS_FORMS = '"" (one worker on --device), all (one worker per NVIDIA GPU), a list of GPU indices like 0,2,3, or cpu:N'
_INDEX_LIST = re.compile(r"^\d+(,\d+)*$")
_CPU_FORM = re.compile(r"^cpu:(\d+)$")
MAX_CPU_WORKERS = 64


class NoGpus(ValueError):
    """``--gpus all`` on a host where no NVIDIA GPU can be seen."""


@dataclass(frozen=True)
class WorkerDevice:
    """Where one worker runs. ``label`` names it in /ready and /metrics; ``device`` is the torch device
    the child loads onto; ``cuda_visible_devices`` (when set) pins the child to one physical GPU, which
    it then sees as ``cuda``; ``threads`` caps the child's CPU threads (0: torch's default)."""

    label: str
    device: str
    cuda_visible_devices: str = ""
    threads: int = 0


def gpus_problem(spec: str) -> str | None:
    """What is wrong with a ``--gpus`` value, as one line naming the field and the allowed forms."""
    spec = spec.strip()
    if spec in ("", "all"):
        return None
    if _INDEX_LIST.match(spec):
        indices = spec.split(",")
        repeated = len(set(int(index) for index in indices)) != len(indices)
        return f"gpus: each GPU index may appear once; got {spec!r}" if repeated else None
    cpu = _CPU_FORM.match(spec)
    if cpu:
        in_range = 1 <= int(cpu.group(1)) <= MAX_CPU_WORKERS
        return None if in_range else f"gpus: cpu:N needs N from 1 to {MAX_CPU_WORKERS}; got {spec!r}"
    return f"gpus: must be {GPUS_FORMS}; got {spec!r}"


def worker_devices(
    spec: str, default_device: str, count_gpus: Callable[[], int] | None = None, cpu_count: int | None = None,
    threads: int = 0,
) -> list[WorkerDevice]:  # fmt: skip
    """One entry per worker. ``spec`` must have passed ``gpus_problem``; ``all`` with no GPU raises
    NoGpus. ``threads`` (0: automatic) caps each worker's CPU threads; automatic splits the cores
    among ``cpu:N`` workers, so N workers do not each start one thread per core and thrash."""
    spec = spec.strip()
    if spec == "":
        return [WorkerDevice(label=default_device, device=default_device, threads=threads)]
    if spec.startswith("cpu:"):
        count = int(spec.split(":", 1)[1])
        cores = cpu_count or os.cpu_count() or 1
        per_worker = threads or max(1, cores // count)
        return [WorkerDevice(label="cpu", device="cpu", threads=per_worker) for _ in range(count)]
    if spec == "all":
        found = (count_gpus or count_visible_gpus)()
        if found == 0:
            raise NoGpus(
                "gpus: 'all' found no NVIDIA GPU on this host (nvidia-smi -L lists none); "
                "leave --gpus empty for one worker on --device, or use cpu:N"
            )
        indices = list(range(found))
    else:
        indices = [int(index) for index in spec.split(",")]
    return [
        WorkerDevice(label=f"cuda:{index}", device="cuda", cuda_visible_devices=str(index), threads=threads)
        for index in indices
    ]


def count_visible_gpus() -> int:
    """NVIDIA GPUs on this host: ``nvidia-smi -L`` (which honours a container's device list), else
    the driver's /proc entries; 0 when neither is there."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            listed = ""
        gpus = [line for line in listed.splitlines() if line.startswith("GPU ")]
        if gpus:
            return len(gpus)
    proc = Path("/proc/driver/nvidia/gpus")
    return len(list(proc.iterdir())) if proc.is_dir() else 0
