"""Helpers of the vLLM tests: run the installed command, write super-configs, read a run's metrics."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent          # .venv-vllm/bin: grpo-pipelines and trl live beside this python
COLOCATE_CONFIG = REPO / "pipelines/grpo/configs/vllm_cpu_colocate.yaml"
ROLLOUT_CONFIG = REPO / "pipelines/rollout/configs/vllm_cpu/rollout.yaml"
RUN_TIMEOUT_S = 1500                       # generous: the CPU is shared, a vLLM start alone can take minutes


def run_cli(*args: str, timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess:
    """``grpo-pipelines ARGS`` from the repository root (the shipped configs' data paths are relative to it)."""
    proc = subprocess.run([str(BIN / "grpo-pipelines"), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ))
    return proc


def check(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


def write_super_config(path: Path, entries: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"pipeline_order": entries}, sort_keys=False), encoding="utf-8")
    return path


def metrics(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def step_logs(run_dir: Path) -> dict[int, dict[str, Any]]:
    """The training log of each step (the one with a loss), by step."""
    return {m["step"]: m for m in metrics(run_dir) if "loss" in m}


# The colocate run and the transformers run of the same config, in one process (one import of the stack).
# temperature 0.7: vLLM must sample with it (TRL's importance-sampling metrics compare vLLM's logprobs with the
# trainer's, both at 0.7); beta 0.04: TRL then logs the KL of the policy to the base model, i.e. how far the
# weights moved; stop string "e": nearly every 16-token completion of the untrained model holds one.
COLOCATE_SETS = {"training_parameters.temperature": 0.7, "training_parameters.beta": 0.04,
                 "training_parameters.model_stop_sequences": ["e"], "reward.score_save_threshold": 0.0}
