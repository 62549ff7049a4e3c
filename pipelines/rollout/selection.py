"""Pure selection rules: scored completions -> SFT examples and preference pairs.

A *scored record* is one line of ``scored.jsonl``: one completion of one prompt, with ``row_id``,
``completion_index``, ``prompt`` (messages), ``completion`` and ``reward`` (the combined score before scaling,
or None when no reward function applied). Records without a score never get selected.
"""
from __future__ import annotations

from typing import Any, Iterable, Optional

_SHAREGPT_ROLE = {"system": "system", "user": "human", "assistant": "gpt"}


def group_by_prompt(records: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Records grouped by ``row_id`` in first-seen order, each group sorted by ``completion_index``."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        groups.setdefault(str(rec["row_id"]), []).append(rec)
    for group in groups.values():
        group.sort(key=lambda r: r.get("completion_index", 0))
    return groups


def _scored(group: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in group if isinstance(r.get("reward"), (int, float))]


def best_of(group: list[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """The highest-scoring record; ties go to the lowest completion_index. None when nothing is scored."""
    scored = _scored(group)
    if not scored:
        return None
    return max(scored, key=lambda r: (r["reward"], -r.get("completion_index", 0)))


def worst_of(group: list[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """The lowest-scoring record; ties go to the highest completion_index. None when nothing is scored."""
    scored = _scored(group)
    if not scored:
        return None
    return min(scored, key=lambda r: (r["reward"], -r.get("completion_index", 0)))


def to_sharegpt(prompt: list[dict[str, str]], completion: str,
                messages: Optional[list[dict[str, Any]]] = None) -> list[dict[str, str]]:
    """Prompt messages plus the completion as the final gpt turn, in ShareGPT ``{from, value}`` form. A multi-turn
    completion (``messages``: tool calls and their results) keeps every turn (``function_call`` and
    ``observation`` turns, as the GRPO node's high-scoring export writes them)."""
    if messages:
        from pipelines.rewards.export import sharegpt_transcript, transcript

        return sharegpt_transcript(transcript(prompt, messages))
    turns = [{"from": _SHAREGPT_ROLE.get(m["role"], m["role"]), "value": m["content"]} for m in prompt]
    turns.append({"from": "gpt", "value": completion})
    return turns


def _meta(rec: dict[str, Any]) -> dict[str, Any]:
    return {"row_id": rec["row_id"], "dataset_path": rec.get("dataset_path"),
            "dataset_index": rec.get("dataset_index")}


def select_sft(groups: dict[str, list[dict[str, Any]]], min_score: Optional[float]) -> list[dict[str, Any]]:
    """Per prompt, the best completion whose score is >= ``min_score`` (any score when None), as ShareGPT."""
    out = []
    for group in groups.values():
        best = best_of(group)
        if best is None or (min_score is not None and best["reward"] < min_score):
            continue
        out.append({"conversations": to_sharegpt(best["prompt"], best["completion"], best.get("completion_messages")),
                    "score": best["reward"], **_meta(best)})
    return out


def select_preferences(groups: dict[str, list[dict[str, Any]]], min_margin: float,
                       min_chosen_score: Optional[float] = None) -> list[dict[str, Any]]:
    """Per prompt, best (chosen) vs worst (rejected) when their scores differ by >= ``min_margin`` (and > 0).

    The rows are in TRL's conversational preference form: ``prompt`` (messages), ``chosen`` and ``rejected``
    (one assistant message each, or the whole transcript of a multi-turn completion), which DPOTrainer reads
    directly; the extra keys are dropped by it.
    """
    out = []
    for group in groups.values():
        best, worst = best_of(group), worst_of(group)
        if best is None or worst is None or best is worst:
            continue
        margin = best["reward"] - worst["reward"]
        if margin <= 0 or margin < min_margin:
            continue
        if min_chosen_score is not None and best["reward"] < min_chosen_score:
            continue
        chosen, rejected = _assistant_turns(best), _assistant_turns(worst)
        if chosen == rejected:
            continue
        out.append({"prompt": best["prompt"], "chosen": chosen, "rejected": rejected,
                    "chosen_score": best["reward"], "rejected_score": worst["reward"], "margin": margin,
                    **_meta(best)})
    return out


def _assistant_turns(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """A record's completion as messages: its whole multi-turn transcript (``completion_messages``: assistant
    tool calls, tool results, the answer) when it has one, else one assistant message."""
    return list(rec.get("completion_messages") or [{"role": "assistant", "content": rec["completion"]}])


def complete_row_ids(groups: dict[str, list[dict[str, Any]]], num_completions: int) -> set[str]:
    """Row ids whose group holds every completion index 0..K-1 (a prompt finished before a kill)."""
    want = set(range(num_completions))
    return {rid for rid, group in groups.items() if {r.get("completion_index") for r in group} >= want}
