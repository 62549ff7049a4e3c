"""Helpers for the reward tests: small configs and rows built inline."""
from __future__ import annotations

from typing import Any

from pipelines.grpo.config import GRPOConfigFile


def make_cfg(*reward_lists: list[dict[str, Any]], reward: dict[str, Any] | None = None) -> GRPOConfigFile:
    """A config with one dataset per reward list (paths need not exist: nothing reads them here)."""
    n = len(reward_lists)
    return GRPOConfigFile.model_validate({
        "model": {"base_model_name": "builtin:tiny"},
        "datasets": [{"path": f"inputs/ds{i}.jsonl", "percentage": 1.0 / n, "reward_funcs": funcs}
                     for i, funcs in enumerate(reward_lists)],
        "dataset_settings": {"total_rows": 10},
        "reward": reward or {},
    })


def row(dataset_index: int = 0, user: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"prompt": [{"role": "user", "content": user}], "answer": extra.pop("answer", ""),
            "dataset_index": dataset_index, "dataset_path": f"inputs/ds{dataset_index}.jsonl",
            "row_id": extra.pop("row_id", f"r{dataset_index}"), **extra}
