"""Scoring rollouts with the training reward stack (pipelines.grpo.rewards.engine.RewardStack).

Completions are handed over the way TRL hands them to rewards for chat prompts: one assistant message list per
completion, with the prompt's row (answer, dataset, extra columns) alongside.
"""
from __future__ import annotations

from typing import Any, Sequence


def _field(result: Any, *names: str) -> Any:
    for name in names:
        if isinstance(result, dict) and name in result:
            return result[name]
        if hasattr(result, name):
            return getattr(result, name)
    return None


def normalise(result: Any) -> dict[str, Any]:
    """One completion's result as ``{rewards: {component: score}, reward, reward_scaled[, errors]}``."""
    rewards = _field(result, "rewards", "components", "component_scores") or {}
    out = {"rewards": {str(k): (None if v is None else float(v)) for k, v in dict(rewards).items()},
           "reward": _field(result, "reward", "combined"),
           "reward_scaled": _field(result, "reward_scaled", "scaled")}
    errors = _field(result, "errors")
    if errors:
        out["errors"] = errors
    return out


def score_groups(stack: Any, rows: Sequence[dict[str, Any]], comps: Sequence[Sequence[dict[str, Any]]],
                 step: int) -> list[list[dict[str, Any]]]:
    """Per prompt, one normalised score per completion; each prompt's K completions are scaled together."""
    out = []
    for row, group in zip(rows, comps):
        prompts = [row["prompt"]] * len(group)
        completions = [[{"role": "assistant", "content": c["text"]}] for c in group]
        results = stack.score_batch(prompts, completions, [row] * len(group), step)
        out.append([normalise(r) for r in results])
    return out
