"""What a run ran on: Python, torch (its CUDA build and the GPUs), the training libraries, the project's commit.

The runner writes it at the top of each node's ``run.log`` and the nodes put it in ``summary.json`` (its
``stack`` block), so two runs that differ can be told apart by what they ran on. Nothing here can fail a run:
a fact that cannot be read is left out (None).

Collecting imports nothing heavy. Versions come from :mod:`pipelines.common.availability` (metadata). Where
torch is already imported its own answers are used; elsewhere (the runner, which imports no torch) its CUDA
build is read from the installed ``torch/version.py`` and the GPU names from ``nvidia-smi``, narrowed by
``CUDA_VISIBLE_DEVICES`` (:func:`pipelines.common.devices.visible_gpu_names`). CUDA is never initialised here: a vLLM
engine or a launcher started after it would inherit that.
"""
from __future__ import annotations

import ast
import logging
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

from pipelines.common.availability import package_dir, version_of
from pipelines.common.devices import visible_gpu_names

log = logging.getLogger(__name__)

# The folder holding the ``pipelines`` package: the git checkout (and requirements files) when run from one.
PROJECT_ROOT = Path(__file__).resolve().parents[2]
# What a run records, in this order; a package that is not installed is left out.
STACK_PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "vllm", "unsloth",
                  "unsloth_zoo", "bitsandbytes", "deepspeed", "flash_attn", "liger_kernel", "math_verify", "wandb",
                  "openai", "pydantic")


def collect_stack() -> dict[str, Any]:
    """Python, platform, installed package versions, CUDA facts and the git commit, as one JSON-able dict."""
    return {"python": platform.python_version(), "platform": platform.platform(),
            "packages": {name: v for name in STACK_PACKAGES if (v := version_of(name)) is not None},
            "cuda": cuda_facts(), "git_commit": git_commit()}


def stack_lines(stack: Optional[dict[str, Any]] = None) -> list[str]:
    """``stack`` (default: collected now) as a few human lines, the header of ``run.log``."""
    stack = stack if stack is not None else collect_stack()
    packages = dict(stack["packages"])
    cuda = stack["cuda"]
    lines = [f"Python {stack['python']} ({stack['platform']})"]
    if "torch" in packages:
        build = f"CUDA {cuda['torch_cuda']} build" if cuda["torch_cuda"] else "CPU build"
        gpus = f"GPUs: {', '.join(cuda['gpus'])}" if cuda["gpus"] else (
            "CUDA available" if cuda["available"] else "no CUDA device")
        lines.append(f"torch {packages.pop('torch')} ({build}); {gpus}")
    lines.append("packages: " + (", ".join(f"{name} {v}" for name, v in packages.items()) or "none found"))
    lines.append(f"git commit: {stack['git_commit'] or 'unknown (not a git checkout)'}")
    return lines


def log_stack() -> None:
    """Log :func:`stack_lines` as one record (the runner's first line in a run dir's ``run.log``)."""
    log.info("stack:\n  %s", "\n  ".join(stack_lines()))


def cuda_facts() -> dict[str, Any]:
    """``torch_cuda`` (the CUDA version torch was built with, None for a CPU build), ``available`` and ``gpus``
    (the names of the GPUs this process sees)."""
    try:
        torch = sys.modules.get("torch")
        if torch is not None:
            available = bool(torch.cuda.is_available())
            if available and torch.cuda.is_initialized():
                names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            else:
                names = visible_gpu_names() if available else []
            return {"torch_cuda": torch.version.cuda, "available": available, "gpus": names}
        built = torch_cuda_build()
        names = visible_gpu_names() if built else []
        return {"torch_cuda": built, "available": bool(names), "gpus": names}
    except Exception as exc:  # noqa: BLE001 - a record of the stack never fails a run
        log.debug("CUDA facts not read: %s", exc)
        return {"torch_cuda": None, "available": None, "gpus": []}


def torch_cuda_build(folder: Optional[Path] = None) -> Optional[str]:
    """``torch.version.cuda`` read from ``torch/version.py`` (of the installed torch, or in ``folder``) without
    importing torch."""
    folder = package_dir("torch") if folder is None else folder
    if folder is None or not (folder / "version.py").is_file():
        return None
    for node in ast.parse((folder / "version.py").read_text(encoding="utf-8")).body:
        target = node.target if isinstance(node, ast.AnnAssign) else (
            node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None)
        if getattr(target, "id", None) == "cuda" and isinstance(node.value, ast.Constant):
            return node.value.value if isinstance(node.value.value, str) else None
    return None


def git_commit(root: Path = PROJECT_ROOT) -> Optional[str]:
    """``git rev-parse HEAD`` of the checkout holding the package, with ``-dirty`` when tracked files changed
    (as ``git describe --dirty``); None when the package is not in a git checkout or git cannot tell."""
    if not (root / ".git").exists() or shutil.which("git") is None:
        return None
    # The checkout's own repository, whatever GIT_DIR the caller has set; no index lock taken.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")} | {"GIT_OPTIONAL_LOCKS": "0"}
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=30, env=env)
        if head.returncode != 0:
            return None
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=30, env=env)
    except (OSError, subprocess.SubprocessError):
        return None
    dirty = status.returncode == 0 and bool(status.stdout.strip())
    return head.stdout.strip() + ("-dirty" if dirty else "")
