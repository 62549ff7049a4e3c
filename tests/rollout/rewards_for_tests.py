"""Reward factories named by import path in the rollout tests (``tests.rollout.rewards_for_tests:...``)."""
from __future__ import annotations

from pipelines.rewards.forms import completion_text, per_sample


def bonus(column: str = "bonus"):
    """Batch form: the row's ``column`` value plus 0.5 when the completion holds an ``e``."""
    def fn(prompts, completions, **columns):
        return [float(b) + (0.5 if "e" in completion_text(c) else 0.0)
                for b, c in zip(columns[column], completions)]
    return fn


def fails_on(char: str = "a"):
    """Per-sample form that raises on completions holding ``char`` (a broken reward)."""
    @per_sample
    def fn(prompt, completion, **row):
        if char in completion:
            raise ValueError(f"cannot score a completion with {char!r}")
        return 1.0
    return fn
