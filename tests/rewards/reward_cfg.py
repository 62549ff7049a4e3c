"""Helpers for the reward tests: the reward layer's own sections and rows, built inline."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

from pipelines.data.config import DatasetEntry
from pipelines.rewards.config import RewardSection
from pipelines.rewards.engine import RewardStack


def make_cfg(*reward_lists: list[dict[str, Any]], reward: dict[str, Any] | None = None) -> SimpleNamespace:
    """``datasets`` (one per reward list; paths need not exist: nothing reads them here) and ``reward``: the
    two sections the reward stack takes."""
    n = len(reward_lists)
    return SimpleNamespace(
        datasets=[DatasetEntry.model_validate({"path": f"inputs/ds{i}.jsonl", "percentage": 1.0 / n,
                                               "reward_funcs": funcs}) for i, funcs in enumerate(reward_lists)],
        reward=RewardSection.model_validate(reward or {}))


def stack_for(cfg: Any, run_dir: Optional[Path] = None, **kwargs: Any) -> RewardStack:
    """The reward stack of a config's ``reward`` and ``datasets`` sections."""
    return RewardStack(cfg.reward, cfg.datasets, run_dir, **kwargs)


def row(dataset_index: int = 0, user: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"prompt": [{"role": "user", "content": user}], "answer": extra.pop("answer", ""),
            "dataset_index": dataset_index, "dataset_path": f"inputs/ds{dataset_index}.jsonl",
            "row_id": extra.pop("row_id", f"r{dataset_index}"), **extra}
