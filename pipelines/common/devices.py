"""Rank and device facts every layer may ask, without importing torch (validation stays torch-free).

:func:`current_rank` is this process's rank under a launcher (``RANK``, 0 when launched alone);
:func:`visible_gpu_count` is how many GPUs this process may use and :func:`visible_gpu_names` their names, both
read from one ``nvidia-smi -L`` listing (:func:`listed_gpus`). The runner's launcher (:mod:`pipelines.launch`),
the nodes and the stack record (:mod:`pipelines.common.stack`) all read them here, so no node imports the runner
layer.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import NamedTuple

# `GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-5c8f...)`, one line per GPU of `nvidia-smi -L`
_GPU_LINE = re.compile(r"^GPU (?P<index>\d+): (?P<name>.*?)(?: \(UUID: (?P<uuid>[^)]*)\))?\s*$")
HIDDEN = ("", "-1", "NoDevFiles")   # CUDA_VISIBLE_DEVICES values that hide every GPU


class ListedGPU(NamedTuple):
    """One GPU as ``nvidia-smi -L`` lists it (``index`` and ``uuid`` are '' where a line lacks them)."""

    index: str
    name: str
    uuid: str


def current_rank() -> int:
    """This process's rank (``RANK``); 0 in a single process."""
    return int(os.environ.get("RANK", "0"))


def listed_gpus() -> list[ListedGPU]:
    """Every GPU the driver lists (``nvidia-smi -L``), before ``CUDA_VISIBLE_DEVICES``; [] without an NVIDIA
    driver, or when ``nvidia-smi`` fails."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return []
    if listed.returncode != 0:
        return []
    gpus = []
    for line in listed.stdout.splitlines():
        if line.startswith("GPU "):
            found = _GPU_LINE.match(line)
            gpus.append(ListedGPU(found["index"], found["name"], found["uuid"] or "") if found
                        else ListedGPU("", line[4:].strip(), ""))
    return gpus


def visible_gpu_count() -> int:
    """GPUs this process may use: those ``nvidia-smi -L`` lists, narrowed by ``CUDA_VISIBLE_DEVICES`` when it
    is set. 0 on a machine without an NVIDIA driver."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in HIDDEN:
        return 0
    found = len(listed_gpus())
    if visible is not None:
        found = min(found, len([v for v in visible.split(",") if v.strip()]))
    return found


def visible_gpu_names() -> list[str]:
    """The names of the GPUs this process may use, in ``CUDA_VISIBLE_DEVICES`` order (indices or UUID
    prefixes); [] without an NVIDIA driver."""
    gpus = listed_gpus()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return [gpu.name for gpu in gpus]
    names = []
    for wanted in (v.strip() for v in visible.split(",") if v.strip()):
        found = [gpu.name for gpu in gpus if wanted == gpu.index or (len(wanted) > 4 and gpu.uuid.startswith(wanted))]
        if not found:    # CUDA stops at the first entry it cannot use
            break
        names.append(found[0])
    return names
