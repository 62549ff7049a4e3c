"""Scoring rollouts with the training reward stack (pipelines.rewards.engine.RewardStack).

A whole generation batch is scored in one call, so every reward call of the batch (an LLM judge's included)
runs concurrently. ``reward`` is the combined score before scaling, which the selection rules use;
``reward_scaled`` applies the configured scaling function to each prompt's K completions together (as GRPO
compares a group), so it does not depend on how prompts were batched or on a resume.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

log = logging.getLogger(__name__)


def score_groups(stack: Any, rows: Sequence[dict[str, Any]], comps: Sequence[Sequence[dict[str, Any]]],
                 step: int) -> list[list[dict[str, Any]]]:
    """Per prompt, one ``{rewards, reward, reward_scaled[, errors]}`` per completion.

    A reward function that raises on a completion gives it ``None`` scores and an ``errors`` entry instead of
    stopping the rollout; CircuitBreakerOpen (e.g. a judge that is down) still stops it.
    """
    from pipelines.rewards.combine import scale
    flat_rows = [row for row, group in zip(rows, comps) for _ in group]
    # a tool-using completion is scored as its messages (calls, results, answer), as in GRPO training
    completions = [c.get("messages") or c["text"] for group in comps for c in group]
    results = stack.score_batch(None, completions, flat_rows, step, raise_errors=False)
    out, pos = [], 0
    for group in comps:
        chunk = results[pos:pos + len(group)]
        pos += len(group)
        scaled = scale([r.combined for r in chunk], stack.scaling)
        scores = []
        for res, value in zip(chunk, scaled):
            item = {"rewards": dict(res.rewards), "reward": res.combined, "reward_scaled": value}
            if res.errors:
                item["errors"] = list(res.errors)
            scores.append(item)
        out.append(scores)
    failed = sum(1 for group in out for s in group if s.get("errors"))
    if failed:
        first = next(s["errors"][0] for group in out for s in group if s.get("errors"))
        log.warning("batch %d: %d completion(s) got reward errors (scored None); first: %s", step, failed, first)
    return out
