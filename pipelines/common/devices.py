"""Rank and device facts every layer may ask, without importing torch (validation stays torch-free).

:func:`current_rank` is this process's rank under a launcher (``RANK``, 0 when launched alone);
:func:`visible_gpu_count` is how many GPUs this process may use. The runner's launcher
(:mod:`pipelines.launch`) and the nodes both read them here, so no node imports the runner layer.
"""
from __future__ import annotations

import os
import shutil
import subprocess


def current_rank() -> int:
    """This process's rank (``RANK``); 0 in a single process."""
    return int(os.environ.get("RANK", "0"))


def visible_gpu_count() -> int:
    """GPUs this process may use, without importing torch: ``nvidia-smi -L``, narrowed by
    ``CUDA_VISIBLE_DEVICES`` when it is set. 0 on a machine without an NVIDIA driver."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1", "NoDevFiles"):
        return 0
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    if listed.returncode != 0:
        return 0
    found = sum(1 for line in listed.stdout.splitlines() if line.startswith("GPU "))
    if visible is not None:
        found = min(found, len([v for v in visible.split(",") if v.strip()]))
    return found
