"""Helpers for the GRPO training tests: a node config derived from the quickstart, a one-entry super-config,
and a runner call from the repository root with the tiny model already in the outputs cache."""
from __future__ import annotations

import copy
import logging
import json
import shutil
from pathlib import Path
from typing import Any, Optional, Sequence

import pytest
import yaml

from pipelines.common.io import read_jsonl

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "pipelines/grpo/configs/quickstart.yaml"
STEP_KEY = "rewards/combined/mean"          # present on every training-step record of metrics.jsonl

# Small and fast: 2 prompts x 4 generations per step, 12 new tokens.
FAST = {"per_device_train_batch_size": 8, "num_generations": 4, "max_completion_length": 12}


def quickstart_config(**training: Any) -> dict[str, Any]:
    """The shipped quickstart config with training_parameters updated (FAST sizes unless given)."""
    cfg = yaml.safe_load(QUICKSTART.read_text(encoding="utf-8"))
    cfg["training_parameters"].update({**FAST, **training})
    return copy.deepcopy(cfg)


def write_super(folder: Path, cfg: dict[str, Any], name: str = "node") -> Path:
    """Write ``cfg`` as a node config plus a super-config running it; returns the super-config path."""
    folder.mkdir(parents=True, exist_ok=True)
    node_cfg = folder / f"{name}.yaml"
    node_cfg.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    super_cfg = folder / f"{name}.super.yaml"
    super_cfg.write_text(f"pipeline_order:\n  - node: grpo\n    config: {node_cfg}\n", encoding="utf-8")
    return super_cfg


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    """A cache folder holding the builtin tiny model, built once per session."""
    from pipelines.common.tiny_model import resolve_model_name

    cache = tmp_path_factory.mktemp("tiny-cache")
    resolve_model_name("builtin:tiny", cache_root=cache)
    return cache


@pytest.fixture
def outputs(tmp_path, tiny_cache, monkeypatch, caplog) -> Path:
    """An outputs root with the tiny model in its cache; the working directory is the repository root."""
    monkeypatch.chdir(REPO)
    caplog.set_level(logging.INFO)   # under pytest the root logger would drop INFO before run.log sees it
    out = tmp_path / "out"
    for child in tiny_cache.iterdir():
        if child.name.startswith("tiny-"):
            shutil.copytree(child, out / ".cache" / child.name)
    return out


def two_process_device() -> str:
    """``launch.device`` for the two-process tests: the GPUs where at least two are visible, else the CPU, asked for
    explicitly (a one-GPU box would otherwise be refused by the launch guard: one process per GPU)."""
    from pipelines.common.devices import visible_gpu_count

    return "auto" if visible_gpu_count() >= 2 else "cpu"


def run_node(outputs: Path, super_cfg: Optional[Path], *sets: str, extra: Sequence[str] = ()) -> int:
    """``python run_pipeline.py [--super-config S] --outputs O --set ... [extra]`` in-process; returns the
    exit code."""
    from pipelines.runner import main

    args = ["--outputs", str(outputs), *extra]
    if super_cfg is not None:
        args = ["--super-config", str(super_cfg)] + args
    for item in sets:
        args += ["--set", item]
    assert Path.cwd() == REPO, "run from the repository root (monkeypatch.chdir(REPO))"
    return main(args)


def step_records(run_dir: Path) -> list[dict[str, Any]]:
    """metrics.jsonl records of training steps, in file order."""
    return [r for r in read_jsonl(run_dir / "metrics.jsonl") if STEP_KEY in r]


def high_scores(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "high_scoring_examples.jsonl"
    return list(read_jsonl(path)) if path.exists() else []


def trainer_state(checkpoint: Path) -> dict[str, Any]:
    return json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))


def text_files(run_dir: Path) -> str:
    """Every text artifact of a run dir (logs, JSON, JSONL, YAML, Jinja, README), concatenated."""
    parts = []
    for path in sorted(run_dir.rglob("*")):
        if path.is_file() and path.suffix in (".log", ".json", ".jsonl", ".yaml", ".yml", ".md", ".jinja", ".txt"):
            parts.append(path.read_text(encoding="utf-8", errors="replace"))
    return "\n".join(parts)


def forcing_bias(tiny_cache: Path, call: str) -> list:
    """transformers' ``sequence_bias`` making the tiny model write ``call`` (a tool call) then end its turn: each
    token of it gets a bias growing with the length of the prefix already written, so the next token always wins.
    The real model and TRL's real tool loop, steered; nothing mocked."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(next(tiny_cache.glob("tiny-*"))))
    ids = tok(call, add_special_tokens=False)["input_ids"] + [tok.convert_tokens_to_ids("<|im_end|>")]
    return [[ids[:k + 1], 100.0 * (k + 1)] for k in range(len(ids))]
