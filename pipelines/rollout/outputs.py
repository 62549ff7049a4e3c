"""Files derived from ``scored.jsonl`` at the end of a rollout: Parquet, SFT, preferences and a summary.

Each is written whole and atomically, so rerunning (or resuming) a finished rollout rewrites them identically.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Sequence

from pipelines.common.io import atomic_write_parquet, atomic_write_text
from pipelines.common.stack import collect_stack
from pipelines.rollout.config import RolloutConfigFile
from pipelines.rollout.selection import group_by_prompt, select_preferences, select_sft

log = logging.getLogger(__name__)

SCORED_PARQUET = "scored.parquet"
SFT = "sft.jsonl"
PREFERENCES = "preferences.jsonl"
SUMMARY = "summary.json"
CURRICULUM = "curriculum.jsonl"


def _jsonl(records: Sequence[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records)


def component_names(records: Sequence[dict[str, Any]]) -> list[str]:
    """Reward component names across records, in first-seen order."""
    names: dict[str, None] = {}
    for rec in records:
        for name in rec.get("rewards") or {}:
            names.setdefault(name, None)
    return list(names)


def write_parquet(records: Sequence[dict[str, Any]], path: Path) -> None:
    """One row per completion; each reward component is its own float column ``rewards.<name>``."""
    import pyarrow as pa

    names = component_names(records)
    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    columns = {
        "row_id": pa.array([r["row_id"] for r in records], pa.string()),
        "dataset_index": pa.array([r.get("dataset_index") for r in records], pa.int64()),
        "dataset_path": pa.array([r.get("dataset_path") for r in records], pa.string()),
        "completion_index": pa.array([r.get("completion_index") for r in records], pa.int64()),
        "prompt": pa.array([[{"role": m["role"], "content": m["content"]} for m in r["prompt"]] for r in records],
                           pa.list_(message)),
        "answer": pa.array([r.get("answer") for r in records], pa.string()),
        "completion": pa.array([r["completion"] for r in records], pa.string()),
        "finish_reason": pa.array([r.get("finish_reason") for r in records], pa.string()),
        "completion_tokens": pa.array([r.get("completion_tokens") for r in records], pa.int64()),
        "reward": pa.array([r.get("reward") for r in records], pa.float64()),
        "reward_scaled": pa.array([r.get("reward_scaled") for r in records], pa.float64()),
    }
    for name in names:
        columns[f"rewards.{name}"] = pa.array([(r.get("rewards") or {}).get(name) for r in records], pa.float64())
    # a multi-turn completion's transcript (tool calls and results) as JSON; null for a single-turn completion
    columns["completion_messages"] = pa.array([json.dumps(r["completion_messages"], ensure_ascii=False, default=str)
                                              if r.get("completion_messages") else None for r in records],
                                             pa.string())
    columns["row_columns"] = pa.array([json.dumps(r.get("row_columns") or {}, default=str) for r in records],
                                      pa.string())
    atomic_write_parquet(path, pa.table(columns))


def _mean(values: Sequence[Any]) -> float | None:
    vals = [float(v) for v in values if isinstance(v, (int, float)) and not math.isnan(v)]
    return sum(vals) / len(vals) if vals else None


def summarize(records: Sequence[dict[str, Any]], n_sft: int, n_pref: int, seconds: float) -> dict[str, Any]:
    groups = group_by_prompt(records)
    return {
        "prompts": len(groups), "completions": len(records), "seconds": round(seconds, 1),
        "reward_mean": _mean([r.get("reward") for r in records]),
        "reward_best_of_k_mean": _mean([max((r["reward"] for r in g if isinstance(r.get("reward"), (int, float))),
                                            default=None) for g in groups.values()]),
        "unscored_completions": sum(1 for r in records if not isinstance(r.get("reward"), (int, float))),
        "components": {n: _mean([(r.get("rewards") or {}).get(n) for r in records])
                       for n in component_names(records)},
        "stopped_by_length": sum(1 for r in records if r.get("finish_reason") == "length"),
        "sft_examples": n_sft, "preference_pairs": n_pref,
    } | _tool_summary(records)


def _tool_summary(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``tools``: calls written per completion, the share of completions with calls, and tool results that are
    errors, when any completion is a tool-using conversation; nothing otherwise."""
    from pipelines.rewards.tools import count_tool_calls

    if not any(r.get("completion_messages") for r in records):
        return {}
    calls = [count_tool_calls(r.get("completion_messages")) for r in records]
    errors = sum(1 for r in records for m in r.get("completion_messages") or []
                 if m.get("role") == "tool" and str(m.get("content", "")).startswith("{'error'"))
    return {"tools": {"calls_per_completion": _mean(calls), "completions_with_calls": _mean([c > 0 for c in calls]),
                      "error_results": errors}}


def write_difficulty(cfg: RolloutConfigFile, run_dir: Path, records: Sequence[dict[str, Any]]) -> dict[str, Path]:
    """difficulty.parquet from every completion's combined reward (the table a GRPO run reads with
    ``dataset_settings.difficulty.from``) and, with ``selection.difficulty_band``, curriculum.jsonl: one row per
    sampled prompt whose solved rate lies in the band, in scored order, as a GRPO dataset reads it."""
    from pipelines.data.difficulty import TABLE_FILE, DifficultyTable
    from pipelines.rewards.components import dataset_labels

    labels = dataset_labels(cfg.datasets)
    table = DifficultyTable(cfg.dataset_settings.difficulty.solved_at)
    keys = [(labels[int(r.get("dataset_index") or 0)], str(r["row_id"])) for r in records]
    table.update(keys, [r.get("reward") for r in records])
    paths = {"difficulty": run_dir / TABLE_FILE}
    table.save(paths["difficulty"])
    band = cfg.selection.difficulty_band
    if band is not None:
        keep, rows = table.in_band(band), {}
        for key, rec in zip(keys, records):
            if key in keep and key not in rows:
                rows[key] = {"prompt": rec["prompt"], "answer": rec.get("answer"), **(rec.get("row_columns") or {})}
        paths["curriculum"] = run_dir / CURRICULUM
        atomic_write_text(paths["curriculum"], _jsonl(list(rows.values())))
        log.info("curriculum: %d of %d row(s) have a solved rate in %s (%s)", len(rows), len(table), list(band),
                 paths["curriculum"])
    return paths


def write_outputs(cfg: RolloutConfigFile, run_dir: Path, records: Sequence[dict[str, Any]],
                  seconds: float) -> dict[str, str]:
    """Write the derived files; return their paths by output name."""
    groups = group_by_prompt(records)
    sft = select_sft(groups, cfg.selection.sft_min_score)
    prefs = select_preferences(groups, cfg.selection.preference_min_margin,
                               cfg.selection.preference_min_chosen_score)
    paths = {"scored_parquet": run_dir / SCORED_PARQUET, "sft": run_dir / SFT,
             "preferences": run_dir / PREFERENCES, "summary": run_dir / SUMMARY}
    write_parquet(records, paths["scored_parquet"])
    write_difficulty(cfg, run_dir, records)   # files of the run dir (a chain reads them via @<label>.run_dir)
    atomic_write_text(paths["sft"], _jsonl(sft))
    atomic_write_text(paths["preferences"], _jsonl(prefs))
    summary = summarize(records, len(sft), len(prefs), seconds) | {"stack": collect_stack()}
    atomic_write_text(paths["summary"], json.dumps(summary, indent=2) + "\n")
    mean = summary["reward_mean"]
    log.info("rollout done in %.0fs: %d prompts x %d completions, mean reward %s, best-of-K mean %s; "
             "%d SFT examples (min score %s), %d preference pairs (min margin %g); outputs in %s",
             seconds, summary["prompts"], cfg.generation.num_completions,
             "n/a" if mean is None else f"{mean:.3f}",
             "n/a" if summary["reward_best_of_k_mean"] is None else f"{summary['reward_best_of_k_mean']:.3f}",
             len(sft), cfg.selection.sft_min_score, len(prefs), cfg.selection.preference_min_margin, run_dir)
    return {k: str(v) for k, v in paths.items()}
