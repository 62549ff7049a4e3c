"""A real (tiny, one-step) training run records its stack: summary.json's ``stack`` block and run.log's header."""
from __future__ import annotations

import json
import platform

import pytest

from pipelines.common.availability import version_of
from pipelines.common.stack import git_commit
from tests.grpo.training_runs import outputs, quickstart_config, run_node, tiny_cache, write_super  # noqa: F401


@pytest.mark.slow
def test_summary_and_run_log_record_the_stack(outputs):  # noqa: F811
    import torch

    sc = write_super(outputs.parent / "cfg", quickstart_config(max_steps=1, save_steps=1))
    assert run_node(outputs, sc, "run_name=stack") == 0
    run = outputs / "stack"
    stack = json.loads((run / "summary.json").read_text())["stack"]
    assert stack["python"] == platform.python_version()
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "datasets"):
        assert stack["packages"][name] == version_of(name), name
    assert stack["cuda"]["torch_cuda"] == torch.version.cuda
    assert stack["cuda"]["available"] is torch.cuda.is_available()
    assert len(stack["cuda"]["gpus"]) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    assert stack["git_commit"] == git_commit()
    log = (run / "run.log").read_text()
    assert f"\n  Python {platform.python_version()} (" in log
    assert f"\n  torch {version_of('torch')} (" in log and f"trl {version_of('trl')}" in log
    assert log.index("stack:") < log.index("training rows")
